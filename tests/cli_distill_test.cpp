// `train --distill-from RUN|CKPT`: the options, what the run records and
// shows, and the refusals (each names the option or both tokenizers).
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

class CliDistill : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_ / "tiny.json";
    write_bytes(config_, kTinyConfig);
    db_ = dir_ / "experiments.db";
  }
  test::CliResult cli(const std::string& args) { return run_cli(args + " --db " + db_); }
  nlohmann::json json_of(const test::CliResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line(), nullptr, false);
  }
  TempDir dir_;
  std::string config_, db_;
};

TEST_F(CliDistill, RecordsTheTeacherAndShowsIt) {
  const auto teacher = json_of(cli("train --config " + config_ + " --json --quiet"));
  ASSERT_TRUE(teacher.is_object());
  const int64_t tid = teacher["run_id"];
  const auto r = cli("train --config " + config_ + " --distill-from " + std::to_string(tid) +
                     " --distill-temperature 3 --distill-alpha 0.2 --json");
  EXPECT_TRUE(contains(r.out, "distillation of teacher run " + std::to_string(tid))) << r.out;
  const auto j = json_of(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["parent_run_id"], tid);
  EXPECT_EQ(j["distill"]["teacher_run"], tid);
  EXPECT_EQ(j["distill"]["temperature"], 3.0);
  EXPECT_EQ(j["distill"]["alpha"], 0.2);
  EXPECT_EQ(j["distill"]["teacher_checkpoint"], teacher["checkpoint"]);
  const std::string id = std::to_string(j["run_id"].get<int64_t>());
  const auto show = cli("runs show " + id);
  EXPECT_EQ(show.exit_code, 0) << show.out;
  EXPECT_TRUE(contains(show.out, "distilled from")) << show.out;
  EXPECT_TRUE(contains(show.out, "teacher run " + std::to_string(tid))) << show.out;
  EXPECT_TRUE(contains(show.out, "temperature 3, alpha 0.2")) << show.out;

  // From the checkpoint directory: the same teacher run is found; defaults T 2, alpha 0.5.
  const auto c = json_of(cli("train --config " + config_ + " --distill-from " +
                             teacher["checkpoint"].get<std::string>() + " --json --quiet"));
  EXPECT_EQ(c["distill"]["teacher_run"], tid);
  EXPECT_EQ(c["distill"]["temperature"], 2.0);
  EXPECT_EQ(c["distill"]["alpha"], 0.5);

  // Resumed: the same teacher, more steps.
  const auto res = cli("train --resume " + id + " --steps 5 --json --quiet");
  const auto rj = json_of(res);
  EXPECT_EQ(rj["steps"], 5);
  EXPECT_EQ(rj["distill"]["teacher_run"], tid);
  EXPECT_TRUE(contains(cli("train --resume " + id + " --steps 7 --distill-alpha 1").out,
                       "--distill-alpha cannot be used with --resume"));
}

TEST_F(CliDistill, RefusesBadOptionsAndTeachers) {
  const auto teacher = json_of(cli("train --config " + config_ + " --json --quiet"));
  const std::string tid = std::to_string(teacher["run_id"].get<int64_t>());
  struct Case {
    std::string args, expected;
  };
  const Case cases[] = {
      {"--distill-from " + tid + " --distill-temperature 0", "--distill-temperature must be > 0"},
      {"--distill-from " + tid + " --distill-temperature -1", "--distill-temperature must be > 0"},
      {"--distill-from " + tid + " --distill-temperature x",
       "--distill-temperature must be a number"},
      {"--distill-from " + tid + " --distill-alpha 1.5", "--distill-alpha must be in [0, 1]"},
      {"--distill-from " + tid + " --distill-alpha -0.1", "--distill-alpha must be in [0, 1]"},
      {"--distill-alpha 0.3", "--distill-alpha applies to a distillation"},
      {"--distill-from 999", "no run with id 999"},
      {"--distill-from " + dir_ / "missing", "does not exist"},
      {"--distill-from " + tid + " --tokenizer byte",
       "the student's tokenizer (byte, vocab 256) differs from teacher run " + tid},
  };
  for (const Case& c : cases) {
    const auto r = cli("train --config " + config_ + " " + c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_TRUE(contains(r.out, c.expected)) << c.args << "\n" << r.out;
  }
  // No run row for any refused launch: only the teacher.
  const auto list = cli("runs list");
  EXPECT_FALSE(contains(list.out, "distilled")) << list.out;
}

}  // namespace
}  // namespace bl
