// `train --dpo-from RUN|CKPT --data PAIRS.jsonl`: what the run records and
// shows, its resume, and the refusals (each names the option or the line).
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
using test::write_bytes;

constexpr const char* kTinyConfig = R"({
  "model": {"name": "tiny", "n_layers": 1,
            "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 0, "max_steps": 3, "batch_size": 2, "seq_len": 32,
            "eval_interval": 0, "eval_batches": 1, "seed": 7, "threads": 1}
})";

class CliDpo : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_ / "tiny.json";
    write_bytes(config_, kTinyConfig);
    db_ = dir_ / "experiments.db";
    pairs_ = dir_ / "pairs.jsonl";
    std::string jsonl;
    for (int i = 0; i < 12; ++i)
      jsonl += R"({"prompt": "KING:\nWhat )" + std::string(1, char('a' + i)) +
               R"( ", "chosen": "say you?", "rejected": "?uoy yas"})" + "\n";
    write_bytes(pairs_, jsonl);
  }
  test::CliResult cli(const std::string& args) { return run_cli(args + " --db " + db_); }
  nlohmann::json json_of(const test::CliResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line(), nullptr, false);
  }
  TempDir dir_;
  std::string config_, db_, pairs_;
};

TEST_F(CliDpo, RecordsTheReferenceShowsAndResumesIt) {
  const auto base = json_of(cli("train --config " + config_ + " --json --quiet"));
  ASSERT_TRUE(base.is_object());
  const int64_t bid = base["run_id"];
  const auto r = cli("train --dpo-from " + std::to_string(bid) + " --data " + pairs_ +
                     " --dpo-beta 0.5 --steps 4 --json");
  EXPECT_TRUE(contains(r.out, "note: DPO learning rate 0.0003, a tenth of the base run's 0.003"))
      << r.out;
  EXPECT_TRUE(contains(
      r.out, "(DPO from run " + std::to_string(bid) + ", beta 0.5, 10 train / 2 val pairs)"))
      << r.out;
  const auto j = json_of(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["parent_run_id"], bid);
  EXPECT_EQ(j["dpo"]["base_run"], bid);
  EXPECT_EQ(j["dpo"]["beta"], 0.5);
  EXPECT_EQ(j["dpo"]["base_checkpoint"], base["checkpoint"]);
  // The policy starts as its reference: the first step's DPO loss is log 2.
  const std::string id = std::to_string(j["run_id"].get<int64_t>());
  const auto csv = cli("runs export " + id + " --format csv");
  EXPECT_TRUE(contains(csv.out, "dpo/reward_margin")) << csv.out.substr(0, 400);
  const auto show = cli("runs show " + id);
  EXPECT_EQ(show.exit_code, 0) << show.out;
  EXPECT_TRUE(contains(show.out, "DPO from")) << show.out;
  EXPECT_TRUE(contains(show.out, "run " + std::to_string(bid) + " (")) << show.out;
  EXPECT_TRUE(contains(show.out, "beta 0.5")) << show.out;

  // From the checkpoint directory: the same run is found; default beta 0.1.
  const auto c = json_of(cli("train --dpo-from " + base["checkpoint"].get<std::string>() +
                             " --data " + pairs_ + " --steps 2 --json --quiet"));
  EXPECT_EQ(c["dpo"]["base_run"], bid);
  EXPECT_EQ(c["dpo"]["beta"], 0.1);

  // Resumed: the same reference, more steps.
  const auto rj = json_of(cli("train --resume " + id + " --steps 6 --json --quiet"));
  EXPECT_EQ(rj["steps"], 6);
  EXPECT_EQ(rj["dpo"]["base_run"], bid);
  EXPECT_TRUE(contains(cli("train --resume " + id + " --steps 8 --dpo-beta 1").out,
                       "--dpo-beta cannot be used with --resume"));
}

TEST_F(CliDpo, RefusalsNameTheOptionOrTheLine) {
  const auto base = json_of(cli("train --config " + config_ + " --json --quiet"));
  const std::string bid = std::to_string(base["run_id"].get<int64_t>());
  auto err = [&](const std::string& args) {
    const auto r = cli(args);
    EXPECT_NE(r.exit_code, 0) << args;
    return r.out;
  };
  EXPECT_TRUE(contains(err("train --dpo-beta 0.2 --steps 2"), "--dpo-beta applies to a DPO run"));
  EXPECT_TRUE(contains(err("train --dpo-from " + bid + " --data " + pairs_ + " --dpo-beta -1"),
                       "--dpo-beta must be > 0"));
  EXPECT_TRUE(contains(err("train --dpo-from " + bid), "a DPO run needs preference pairs"));
  EXPECT_TRUE(contains(err("train --dpo-from " + bid + " --data " + pairs_ + " --preset gpt-tiny"),
                       "no preset, config, --set or tokenizer"));
  EXPECT_TRUE(
      contains(err("train --dpo-from " + bid + " --distill-from " + bid + " --data " + pairs_),
               "give --dpo-from or --distill-from, not both"));
  write_bytes(dir_ / "bad.jsonl",
              "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n"
              "{\"prompt\": \"a\", \"chosen\": 3, \"rejected\": \"c\"}\n");
  EXPECT_TRUE(contains(err("train --dpo-from " + bid + " --data " + dir_ / "bad.jsonl"),
                       "bad.jsonl:2: \"chosen\" must be a string, got number"));
}

// `train --grpo-from RUN --reward SPEC --data PROMPTS.jsonl`: recorded with
// its recipe, shown, resumed, and refused with the option named.
TEST_F(CliDpo, GrpoRecordsItsRecipeShowsAndResumesIt) {
  const auto base = json_of(cli("train --config " + config_ + " --json --quiet"));
  const int64_t bid = base["run_id"];
  const std::string prompts = dir_ / "prompts.jsonl";
  std::string jsonl;
  for (int i = 0; i < 10; ++i)
    jsonl += R"({"prompt": "KING:\nWhat )" + std::string(1, char('a' + i)) +
             R"(", "target": "s"})" + "\n";
  write_bytes(prompts, jsonl);
  const auto r =
      cli("train --grpo-from " + std::to_string(bid) + " --data " + prompts +
          " --reward 'regex:^[aeiou]' --group-size 3 --max-new-tokens 5 --steps 3 --json");
  EXPECT_TRUE(contains(r.out, "(GRPO from run " + std::to_string(bid) +
                                  ", reward regex:^[aeiou], 3 completions of <= 5 tokens per "
                                  "prompt, 9 train / 1 val prompts)"))
      << r.out;
  const auto j = json_of(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["parent_run_id"], bid);
  EXPECT_EQ(j["grpo"]["reward"], "regex:^[aeiou]");
  EXPECT_EQ(j["grpo"]["group"], 3);
  EXPECT_EQ(j["grpo"]["max_new_tokens"], 5);
  const std::string id = std::to_string(j["run_id"].get<int64_t>());
  const auto show = cli("runs show " + id);
  EXPECT_TRUE(contains(show.out, "GRPO from")) << show.out;
  EXPECT_TRUE(contains(show.out, "reward regex:^[aeiou], group 3")) << show.out;
  const auto csv = cli("runs export " + id + " --format csv");
  EXPECT_TRUE(contains(csv.out, "grpo/reward_mean")) << csv.out.substr(0, 400);
  const auto rj = json_of(cli("train --resume " + id + " --steps 5 --json --quiet"));
  EXPECT_EQ(rj["steps"], 5);
  EXPECT_EQ(rj["grpo"]["group"], 3);
  EXPECT_TRUE(contains(cli("train --resume " + id + " --steps 7 --group-size 4").out,
                       "--group-size cannot be used with --resume"));
  EXPECT_TRUE(
      contains(cli("train --group-size 4 --steps 2").out, "--group-size applies to a GRPO run"));
  EXPECT_TRUE(contains(cli("train --grpo-from " + std::to_string(bid) + " --data " + prompts).out,
                       "a GRPO run needs --reward"));
  EXPECT_TRUE(contains(cli("train --grpo-from " + std::to_string(bid) + " --data " + prompts +
                           " --reward exact --group-size 1")
                           .out,
                       "--group-size must be >= 2"));
}

}  // namespace
}  // namespace bl
