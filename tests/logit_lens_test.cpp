// The logit lens: one logits tensor per layer boundary, the last equal to the
// model's output bit for bit, for a plain and a hybrid model; and the CLI's
// `inspect --lens` table and CSV.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli_support.h"
#include "core/presets.h"
#include "expect_error.h"
#include "run_support.h"
#include "temp_files.h"
#include "tensor/graph.h"

namespace bl {
namespace {

TEST(LogitLens, OneLogitsPerLayerBoundaryTheLastIsTheOutput) {
  for (const char* preset : {"gpt-tiny", "jamba-tiny"}) {
    ModelConfig c = load_preset(preset).model;
    c.vocab_size = 40;
    LanguageModel m(c);
    Rng rng(3);
    m.init_weights(rng);
    std::vector<int32_t> ids = {1, 5, 9, 2, 7, 7, 3, 0};
    const Tokens t{ids.data(), Shape{1, 8}};
    NoGradGuard no_grad;
    Tensor out = m.forward(t);
    const std::vector<Tensor> lens = m.lens_logits(t);
    ASSERT_EQ(int64_t(lens.size()), m.n_layers() + 1) << preset;
    for (const Tensor& l : lens) ASSERT_EQ(l.shape(), out.shape()) << preset;
    EXPECT_EQ(std::memcmp(lens.back().data(), out.data(), size_t(out.numel()) * sizeof(float)), 0)
        << preset;
    // The embeddings' lens differs from the output's (the blocks do something).
    EXPECT_NE(std::memcmp(lens.front().data(), out.data(), size_t(out.numel()) * sizeof(float)), 0)
        << preset;
    current_graph().clear();
  }
}

TEST(LogitLens, InspectPrintsTheTableAndWritesEveryCell) {
  test::TempDir dir;
  test::write_bytes(dir / "data.txt", test::shakespeare().substr(0, 20000));
  const std::string db = dir / "experiments.db";
  const auto tr = test::run_cli(
      "train --preset gpt-tiny --set model.n_layers=2 --set model.block.d_model=32 --steps 3 "
      "--batch-size 2 --seq-len 32 --threads 1 --data " +
      dir / "data.txt" + " --json --quiet --db " + db);
  ASSERT_EQ(tr.exit_code, 0) << tr.out;
  const auto j = nlohmann::json::parse(tr.last_line());
  const std::string id = std::to_string(j["run_id"].get<int64_t>());
  const auto r = test::run_cli("inspect " + id + " --lens --prompt \"ROMEO:\" --csv " +
                               dir / "lens.csv" + " --db " + db);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_PRED2(test::contains, r.out, "after the embeddings (L0) and after each of 2 blocks");
  EXPECT_PRED2(test::contains, r.out, "\nL2 ");
  EXPECT_PRED2(test::contains, r.out, "wrote " + dir / "lens.csv" + " (18 rows)");
  std::istringstream csv(test::read_bytes(dir / "lens.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "layer,position,input,top,top_prob,next,next_prob");
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 3 * 6);  // (2 blocks + embeddings) x "ROMEO:"
  EXPECT_PRED2(test::contains, test::run_cli("inspect " + id + " --db " + db).out,
               "inspect needs a view: --lens");
  EXPECT_PRED2(test::contains, test::run_cli("inspect " + id + " --lens --db " + db).out,
               "--lens needs --prompt TEXT");
}

}  // namespace
}  // namespace bl
