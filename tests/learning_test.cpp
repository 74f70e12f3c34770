// Training measurably learns on the real corpus: gpt-tiny with the PyTorch
// reference recipe (../shared/perf/README.md: val 2.344 / 2.347 after 300 steps
// at seeds 1337 / 1338) must reach val loss <= 2.45 after 300 steps.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace bl {
namespace {

TEST(Learning, GptTinyReachesReferenceValLoss) {
  auto r = test::run_cli("train --preset gpt-tiny --steps 300 --seed 1337 --json --quiet", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.last_line());
  const double val = j["val_loss"].get<double>();
  std::printf("gpt-tiny 300 steps: train %.4f val %.4f (%.0f tok/s)\n",
              j["final_train_loss"].get<double>(), val, j["tokens_per_sec"].get<double>());
  EXPECT_LE(val, 2.45);
  EXPECT_GE(val, 1.0);  // far below the reference would mean a leak between splits
}

// Position "sinusoidal" follows MLX's SinusoidalPositionalEncoding (lmxlab's
// recipe): it learns nearly as fast as learned positions. Measured on this
// VM (seed 1337, 150 steps): learned 2.456, sinusoidal 2.595, the Vaswani
// unit-amplitude table 3.346 (position swamps token embeddings at std 0.02).
TEST(Learning, SinusoidalPositionsTrainNearLearnedOnes) {
  auto val_after_150 = [](const std::string& set) {
    auto r = test::run_cli(
        "train --preset gpt-tiny --steps 150 --seed 1337 --json --quiet --set " + set, false);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line())["val_loss"].get<double>();
  };
  const double learned = val_after_150("model.block.position=learned");
  const double sinusoidal = val_after_150("model.block.position=sinusoidal");
  std::printf("150 steps: val learned %.4f sinusoidal %.4f\n", learned, sinusoidal);
  EXPECT_LE(sinusoidal, learned + 0.25);
}

}  // namespace
}  // namespace bl
