// blocklab-cli sample's decoding modes, as a user runs them: beam search,
// best-of-N, speculative decoding with a draft run, stop strings, the
// repetition penalty, and clear errors for options that exclude each other.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli_support.h"
#include "temp_files.h"

namespace bl::test {
namespace {

class CliSample : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string common = " --steps 12 --warmup 2 --batch-size 8 --seq-len 64 --quiet --db " +
                               (*dir_ / "e.db") + " --out ";
    ASSERT_EQ(run_cli("train --preset gpt-tiny" + common + (*dir_ / "target")).exit_code, 0);
    ASSERT_EQ(
        run_cli("train --preset llama-tiny --set model.n_layers=1" + common + (*dir_ / "draft"))
            .exit_code,
        0);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string run(const std::string& name) { return " --run " + (*dir_ / name); }
  static TempDir* dir_;
};
TempDir* CliSample::dir_ = nullptr;

TEST_F(CliSample, SpeculativeDecodingPrintsTheTargetsGreedyText) {
  const auto greedy =
      run_cli("sample" + run("target") + " --prompt ROMEO: --tokens 40 --temperature 0", false);
  ASSERT_EQ(greedy.exit_code, 0) << greedy.out;
  const auto spec = run_cli("sample" + run("target") + " --prompt ROMEO: --tokens 40 --draft " +
                                (*dir_ / "draft") + " --draft-tokens 3",
                            false);
  ASSERT_EQ(spec.exit_code, 0);
  EXPECT_EQ(spec.out, greedy.out);
  // Its own draft agrees with the target on every token.
  const auto self = run_cli("sample" + run("target") + " --prompt ROMEO: --tokens 40 --draft " +
                            (*dir_ / "target"));
  EXPECT_NE(self.out.find("(100.0%)"), std::string::npos) << self.out;
}

TEST_F(CliSample, BeamSearchAndBestOfReportTheirLogProbability) {
  const auto beams = run_cli("sample" + run("target") + " --prompt ROMEO: --tokens 20 --beams 3");
  ASSERT_EQ(beams.exit_code, 0) << beams.out;
  EXPECT_EQ(beams.out.rfind("ROMEO:", 0), 0u);
  EXPECT_NE(beams.out.find("beam search: 3 beams, best log-prob -"), std::string::npos);
  const auto best = run_cli("sample" + run("target") + " --prompt ROMEO: --tokens 20 --best-of 4");
  ASSERT_EQ(best.exit_code, 0) << best.out;
  EXPECT_NE(best.out.find("best of 4 samples: log-prob -"), std::string::npos);
}

TEST_F(CliSample, StopStringEndsTheTextAndThePenaltyChangesIt) {
  const std::string base =
      "sample" + run("target") + " --prompt ROMEO: --tokens 60 --temperature 0";
  const auto full = run_cli(base, false).out;
  ASSERT_GT(full.size(), 12u) << full;
  const std::string stop(1, full[10]);    // a character the text reaches
  const size_t cut = full.find(stop, 6);  // its first occurrence after the prompt
  EXPECT_EQ(run_cli(base + " --stop '" + stop + "'", false).out, full.substr(0, cut) + "\n");
  EXPECT_NE(run_cli(base + " --repetition-penalty 2", false).out, full);
}

TEST_F(CliSample, ConflictingOrInvalidOptionsAreRefused) {
  for (const std::string& bad :
       {std::string(" --beams 2 --best-of 2"), std::string(" --beams 0"),
        std::string(" --draft-tokens 2"), std::string(" --repetition-penalty 0"),
        " --draft " + (*dir_ / "draft") + " --temperature 0.7"}) {
    const auto r = run_cli("sample" + run("target") + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.out;
    EXPECT_NE(r.out.find("--"), std::string::npos) << r.out;
  }
}

TEST(CliBench, DecodeReportsTokensPerSecondOnTheStatePath) {
  for (const char* preset : {"gpt-tiny", "mamba2-tiny"}) {
    const auto r = run_cli(std::string("bench --decode --threads 1 --decode-tokens 20 --repeat 2 "
                                       "--decode-batch 2 --preset ") +
                               preset,
                           false);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.last_line());
    EXPECT_EQ(j["mode"], "decode");
    EXPECT_EQ(j["preset"], preset);
    EXPECT_EQ(j["batch"], 2);
    EXPECT_GT(j["tokens_per_sec"].get<double>(), 0.0);
    EXPECT_GT(j["prefill_ms"].get<double>(), 0.0);
  }
  EXPECT_EQ(run_cli("bench --decode --preset gpt-tiny --decode-tokens 1000").exit_code, 2);
  EXPECT_EQ(run_cli("bench --preset gpt-tiny --decode-tokens 10").exit_code, 2);
}

}  // namespace
}  // namespace bl::test
