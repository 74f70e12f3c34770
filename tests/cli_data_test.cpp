// `data prepare` and training on its token file from the command line: the
// file trains like its text, evaluates on its val split, and bad use is
// refused naming the option.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli_support.h"
#include "expect_error.h"
#include "temp_files.h"
#include "test_paths.h"

namespace bl {
namespace {

using test::contains;
using test::run_cli;
using test::TempDir;

class CliData : public ::testing::Test {
 protected:
  void SetUp() override {
    text_ = dir_ / "corpus.txt";
    test::write_bytes(text_, test::read_bytes(std::string(BLOCKLAB_SOURCE_DIR) +
                                              "/resources/data/tinyshakespeare.txt")
                                 .substr(0, 60000));
    db_ = dir_ / "experiments.db";
  }
  nlohmann::json json_of(const test::CliResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line(), nullptr, false);
  }
  TempDir dir_;
  std::string text_, db_;
};

TEST_F(CliData, PreparedTokensTrainLikeTheirTextAndEvaluate) {
  const std::string tokens = dir_ / "corpus.tokens";
  const auto p = json_of(run_cli("data prepare --data " + text_ + " --out " + tokens + " --json"));
  ASSERT_TRUE(p.is_object());
  EXPECT_EQ(p["n_tokens"], 60000);
  EXPECT_EQ(p["tokenizer"], "char");
  const std::string train =
      " --preset gpt-tiny --set model.n_layers=1 --set model.block.d_model=32 --steps 3 "
      "--batch-size 2 --seq-len 32 --threads 1 --eval-interval 0 --json --quiet --db " +
      db_;
  const auto a = json_of(run_cli("train --data " + text_ + train));
  const auto b = json_of(run_cli("train --data " + tokens + train));
  ASSERT_TRUE(a.is_object() && b.is_object());
  EXPECT_EQ(a["final_train_loss"], b["final_train_loss"]);
  EXPECT_EQ(a["val_loss"], b["val_loss"]);
  const std::string id = std::to_string(b["run_id"].get<int64_t>());
  const auto e =
      run_cli("eval --run " + id + " --batches 2 --seq-len 32 --batch-size 2 --json --db " + db_);
  EXPECT_EQ(e.exit_code, 0) << e.out;
  const auto show = run_cli("runs show " + id + " --db " + db_);
  EXPECT_TRUE(contains(show.out, "corpus.tokens")) << show.out;
}

// A modular-arithmetic task trains with the val_fraction it prints: the run's
// validation is the held-out equations.
TEST_F(CliData, SynthesizedTaskTrainsWithItsHeldOutSplit) {
  const std::string f = dir_ / "mod97.txt";
  const auto j =
      json_of(run_cli("data synth --task add --p 97 --train-fraction 0.4 --out " + f + " --json"));
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["n_train"], 3764);  // round(0.4 * 97^2)
  EXPECT_EQ(j["n_val"], 97 * 97 - 3764);
  char vf[64];
  std::snprintf(vf, sizeof vf, "%.17g", j["val_fraction"].get<double>());
  const auto r = json_of(
      run_cli("train --data " + f + " --set train.val_fraction=" + vf +
              " --preset gpt-tiny --set model.n_layers=1 --set model.block.d_model=32 --steps 2 "
              "--batch-size 2 --seq-len 18 --threads 1 --json --quiet --db " +
              db_));
  EXPECT_EQ(r["status"], "completed");
  // pass@k on the held-out equations, recorded as evals of the run.
  const std::string id = std::to_string(r["run_id"].get<int64_t>());
  const auto e = json_of(run_cli("eval --run " + id +
                                 " --equations --samples 4 --k 1,4 --limit 20 --json --db " + db_));
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["problems"], 20);
  EXPECT_EQ(e["split"], "val");
  EXPECT_TRUE(e.contains("pass@4"));
  const auto show = run_cli("runs show " + id + " --db " + db_);
  EXPECT_TRUE(contains(show.out, "val/pass@4")) << show.out;
  EXPECT_TRUE(contains(run_cli("eval --run " + id + " --samples 3 --db " + db_).out,
                       "--samples applies to --equations"));
  EXPECT_TRUE(contains(
      run_cli("eval --run " + id + " --equations --samples 2 --temperature 0 --db " + db_).out,
      "greedy decoding (temperature 0) gives one answer"));
  EXPECT_TRUE(contains(run_cli("data synth --task div --p 12 --out " + f).out,
                       "p (12) must be prime for div"));
}

TEST_F(CliData, RefusalsNameTheOption) {
  EXPECT_TRUE(
      contains(run_cli("data prepare --data " + text_).out, "needs --data TEXT_FILE --out"));
  EXPECT_TRUE(contains(run_cli("data split").out, "unknown data subcommand 'split'"));
  EXPECT_TRUE(
      contains(run_cli("data prepare --data " + dir_ / "none.txt" + " --out " + dir_ / "x").out,
               "text file not found"));
  const std::string tokens = dir_ / "c.tokens";
  ASSERT_EQ(run_cli("data prepare --data " + text_ + " --out " + tokens + " --quiet").exit_code, 0);
  const auto r = run_cli("train --data " + tokens + " --tokenizer byte --steps 2 --db " + db_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "is a token file prepared with the char tokenizer")) << r.out;
}

}  // namespace
}  // namespace bl
