// blocklab-cli and the experiment store end to end: every training run is
// recorded and checkpointed, `runs` browses / exports / compares / tags /
// deletes, `train --resume` and `--fork` continue runs, and a SIGKILLed
// training process leaves an intact database whose run can be resumed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_support.h"
#include "expect_error.h"
#include "store/experiment_store.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH
#include "train/store_logger.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::read_bytes;
using test::run_cli;
using test::TempDir;
using test::write_bytes;

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> cells;
  for (size_t b = 0;;) {
    const size_t e = line.find(',', b);
    cells.push_back(line.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) return cells;
    b = e + 1;
  }
}
// d_model 32, 2 layers, batch 2, seq 32: ~0.3 ms per step.
constexpr const char* kTinyConfig = R"({
  "model": {"name": "tiny", "n_layers": 2,
            "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 2, "max_steps": 12, "batch_size": 2, "seq_len": 32,
            "eval_interval": 5, "eval_batches": 2, "checkpoint_interval": 4, "seed": 7, "threads": 1}
})";

class CliRuns : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_ / "tiny.json";
    write_bytes(config_, kTinyConfig);
    db_ = dir_ / "db/experiments.db";
  }
  // Runs blocklab-cli with --db appended to `args`.
  test::CliResult cli(const std::string& args, bool merge_stderr = true) {
    return run_cli(args + " --db " + db_, merge_stderr);
  }
  // Trains the tiny config; returns the --json summary.
  nlohmann::json train(const std::string& extra = "") {
    auto r = cli("train --config " + config_ + " --json --quiet " + extra, false);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line());
  }
  std::vector<double> losses(int64_t run) {
    auto store = ExperimentStore::open_readonly(db_);
    return store.metrics(run, "loss").values;
  }
  TempDir dir_;
  std::string config_, db_;
};

TEST_F(CliRuns, EveryTrainingRunIsRecordedWithItsCheckpoints) {
  nlohmann::json j = train("--name first --tag smoke");
  const int64_t id = j["run_id"];
  EXPECT_EQ(id, 1);
  EXPECT_EQ(j["db"], db_);
  ExperimentStore store(db_);
  auto run = store.get_run(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kCompleted);
  EXPECT_EQ(run->name, "first");
  EXPECT_EQ(run->tags, std::vector<std::string>{"smoke"});
  EXPECT_EQ(run->model_config["block"]["d_model"], 32);
  EXPECT_EQ(run->train_config["max_steps"], 12);
  EXPECT_EQ(run->dataset_sha256.size(), 64u);
  EXPECT_EQ(run->tokenizer["type"], "char");
  EXPECT_EQ(run->param_count, j["params"].get<int64_t>());
  EXPECT_EQ(store.metrics(id, "loss").size(), 12u);
  EXPECT_EQ(store.metrics(id, "grad_norm").size(), 12u);
  EXPECT_EQ(store.evals(id).size(), 3u);  // steps 4, 9 and the final one at 11
  // Checkpoints every 4 steps (4, 8, 12), the newest two kept, under <db dir>/runs/<id>.
  auto ck = store.checkpoints(id);
  ASSERT_EQ(ck.size(), 3u);
  EXPECT_EQ(ck.back().step, 12);
  EXPECT_EQ(ck.back().path, dir_ / "db/runs/1/checkpoints/step-12");
  EXPECT_EQ(j["checkpoint"], ck.back().path);
  EXPECT_TRUE(fs::exists(ck.back().path + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(ck[1].path + "/optimizer.safetensors"));
  EXPECT_FALSE(fs::exists(ck[0].path));

  // BLOCKLAB_DB is the default when --db is not given; --out still writes a copy.
  const std::string env_db = dir_ / "env/other.db";
  setenv("BLOCKLAB_DB", env_db.c_str(), 1);
  auto r = run_cli("train --config " + config_ + " --steps 3 --quiet --out " + (dir_ / "out"));
  unsetenv("BLOCKLAB_DB");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "run 1 recorded in " + env_db)) << r.out;
  EXPECT_TRUE(fs::exists(dir_ / "out/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ / "env/runs/1/checkpoints/step-3/checkpoint.json"));
}

TEST_F(CliRuns, BudgetsEndARunCompletedWithTheReasonRecorded) {
  // The tiny run's FLOPs per step, from a 1-step run.
  const nlohmann::json one = train("--steps 1");
  const double per_step = one["total_flops"].get<double>();
  ASSERT_GT(per_step, 0);
  nlohmann::json j = train("--steps 40 --flop-budget " + std::to_string(per_step * 7.5));
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["steps"], 7);
  EXPECT_TRUE(contains(j["message"], "FLOP budget")) << j.dump();
  EXPECT_LE(j["total_flops"].get<double>(), per_step * 7.5);

  j = train("--steps 1000000 --checkpoint-interval 0 --time-budget 1.5");
  EXPECT_EQ(j["status"], "completed");
  EXPECT_LT(j["steps"].get<int64_t>(), 1000000);
  EXPECT_TRUE(contains(j["message"], "time budget of 1.5 s")) << j.dump();
  auto store = ExperimentStore::open_readonly(db_);
  auto run = store.get_run(j["run_id"].get<int64_t>());
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kCompleted);
  EXPECT_TRUE(contains(run->status_message, "time budget")) << run->status_message;
  EXPECT_EQ(run->train_config["time_budget_s"], 1.5);

  // A resume may give more time; the FLOP budget, which shapes the schedule, is fixed.
  auto r =
      cli("train --resume " + std::to_string(j["run_id"].get<int64_t>()) + " --flop-budget 1e9");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "--flop-budget cannot be used with --resume")) << r.out;
  r = cli("train --config " + config_ + " --time-budget -3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "train.time_budget_s")) << r.out;
}

TEST_F(CliRuns, ListShowExport) {
  train("--tag a");
  train("--steps 6 --lr 0.001");
  auto r = cli("runs list");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "completed")) << r.out;
  EXPECT_TRUE(contains(r.out, "tiny")) << r.out;
  r = cli("runs list --tag a --json", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], 1);
  EXPECT_EQ(list[0]["steps"], 12);
  r = cli("runs list --status diverged --json", false);
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 0u);
  EXPECT_EQ(cli("runs list --status weird").exit_code, 2);

  r = cli("runs show 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* s :
       {"run 2", "completed", "summary:", "final_train_loss", "metrics:", "loss",
        "checkpoints:", "step-6", "model config:", "\"d_model\": 32", "train config:"})
    EXPECT_TRUE(contains(r.out, s)) << s << "\n" << r.out;
  r = cli("runs show 2 --json", false);
  auto show = nlohmann::json::parse(r.out);
  EXPECT_EQ(show["metrics"]["loss"]["count"], 6);
  EXPECT_EQ(show["train_config"]["learning_rate"], 0.001);

  // CSV: a header and one row per step; values are exact.
  r = cli("runs export 2 --format csv", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<std::string> lines;
  for (size_t b = 0; b < r.out.size();) {
    size_t e = r.out.find('\n', b);
    lines.push_back(r.out.substr(b, e - b));
    b = e + 1;
  }
  ASSERT_EQ(lines.size(), 7u) << r.out;
  EXPECT_EQ(lines[0],
            "step,wall_time,eval_loss,grad_norm,learning_rate,loss,step_time_ms,sys/cpu_percent,"
            "sys/rss_mb,sys/threads,tokens_per_sec,tokens_seen");
  EXPECT_EQ(lines[1].substr(0, 2), "1,");  // steps taken, 1-based like charts and the CLI
  const double first_loss = std::stod(split_csv(lines[1])[5]);  // the "loss" column
  EXPECT_EQ(first_loss, losses(2)[0]);
  // JSON: every metric, as columns.
  r = cli("runs export 2 --format json --out " + (dir_ / "e.json"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto ex = nlohmann::json::parse(read_bytes(dir_ / "e.json"));
  EXPECT_EQ(ex["run"]["id"], 2);
  EXPECT_EQ(ex["metrics"]["loss"]["value"].size(), 6u);
  EXPECT_EQ(ex["metrics"]["loss"]["step"][0], 1);
  EXPECT_EQ(ex["metrics"]["loss"]["value"][0].get<double>(), losses(2)[0]);
  EXPECT_EQ(ex["checkpoints"].size(), 2u);
  EXPECT_EQ(cli("runs export 2 --format xml").exit_code, 2);
}

TEST_F(CliRuns, CompareShowsOnlyDifferingConfigAndMetricsSideBySide) {
  train();
  train("--lr 0.001 --batch-size 2");
  auto r = cli("runs compare 1 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "train.learning_rate")) << r.out;
  EXPECT_TRUE(contains(r.out, "0.003")) << r.out;
  EXPECT_TRUE(contains(r.out, "0.001")) << r.out;
  EXPECT_FALSE(contains(r.out, "train.batch_size")) << r.out;  // equal in both
  EXPECT_FALSE(contains(r.out, "model.block.d_model")) << r.out;
  EXPECT_TRUE(contains(r.out, "loss (final)")) << r.out;
  EXPECT_TRUE(contains(r.out, "eval_loss (best)")) << r.out;
  r = cli("runs compare 1 2 --json", false);
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["config_diff"].size(), 1u) << j.dump();
  EXPECT_EQ(j["config_diff"]["train.learning_rate"], nlohmann::json({0.003, 0.001}));
  EXPECT_EQ(j["metrics"]["loss (final)"].size(), 2u);
  EXPECT_EQ(cli("runs compare 1").exit_code, 2);
  r = cli("runs compare 1 7");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "no run with id 7")) << r.out;
}

TEST_F(CliRuns, TagNoteDelete) {
  train();
  train("--steps 4");
  auto r = cli("runs tag 1 baseline lr-sweep");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "baseline, lr-sweep")) << r.out;
  r = cli("runs tag 1 lr-sweep --remove");
  EXPECT_TRUE(contains(r.out, "tags: baseline")) << r.out;
  ASSERT_EQ(cli("runs note 1 \"first try, dropout off\"").exit_code, 0);
  {
    auto store = ExperimentStore::open_readonly(db_);
    auto run = store.get_run(1);
    EXPECT_EQ(run->tags, std::vector<std::string>{"baseline"});
    EXPECT_EQ(run->notes, "first try, dropout off");
  }
  const std::string files = dir_ / "db/runs/2";
  ASSERT_TRUE(fs::exists(files));
  r = cli("runs delete 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_FALSE(fs::exists(files));
  r = cli("runs show 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "no run with id 2")) << r.out;
  EXPECT_TRUE(contains(r.out, db_)) << r.out;
  EXPECT_EQ(cli("runs delete 2").exit_code, 1);
  EXPECT_EQ(cli("runs tag 9 x").exit_code, 1);
  EXPECT_EQ(cli("runs note abc text").exit_code, 2);
  EXPECT_EQ(cli("runs frobnicate").exit_code, 2);
  EXPECT_TRUE(fs::exists(dir_ / "db/runs/1"));
}

TEST_F(CliRuns, BadDatabaseFilesAreNamedAndNeverTouched) {
  const std::string garbage = dir_ / "garbage.db";
  write_bytes(garbage, std::string("this is not a database at all\n") + std::string(5000, 'x'));
  const std::string before = read_bytes(garbage);
  for (const std::string& args : std::vector<std::string>{
           "runs list", "runs show 1", "train --config " + config_ + " --steps 2"}) {
    auto r = run_cli(args + " --db " + garbage);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, garbage)) << r.out;
    EXPECT_TRUE(contains(r.out, "not a Blocklab experiment database")) << r.out;
  }
  EXPECT_EQ(read_bytes(garbage), before);
  EXPECT_FALSE(fs::exists(dir_ / "runs"));

  // Somebody else's SQLite database.
  const std::string foreign = dir_ / "foreign.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  const std::string foreign_before = read_bytes(foreign);
  auto r = run_cli("train --config " + config_ + " --steps 2 --db " + foreign);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, foreign)) << r.out;
  EXPECT_EQ(read_bytes(foreign), foreign_before);

  // A directory, and a database path that cannot be created.
  r = run_cli("runs list --db " + dir_.path());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "is a directory")) << r.out;
  r = run_cli("train --config " + config_ + " --steps 2 --db " + garbage + "/sub/x.db");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, garbage + "/sub/x.db")) << r.out;

  // No database yet: listing says so, showing is an error naming the path.
  r = run_cli("runs list --db " + (dir_ / "none.db"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "no runs recorded yet")) << r.out;
  r = run_cli("runs show 1 --db " + (dir_ / "none.db"));
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "none.db"));
}

TEST_F(CliRuns, ResumeContinuesTheLossCurveExactly) {
  // A constant schedule makes the lr independent of the horizon, so 6 steps +
  // resume to 12 must equal 12 straight steps (dropout on: its RNG is restored).
  const std::string common = "--schedule constant --set model.block.dropout=0.1";
  nlohmann::json straight = train(common);
  nlohmann::json first = train(common + " --steps 6");
  auto r = cli("train --resume " + std::to_string(first["run_id"].get<int64_t>()) +
                   " --steps 12 --json --quiet",
               false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json resumed = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(resumed["parent_run_id"], first["run_id"]);
  EXPECT_EQ(resumed["steps"], 12);
  auto store = ExperimentStore::open_readonly(db_);
  MetricSeries a = store.metrics(straight["run_id"], "loss");
  MetricSeries b = store.metrics(first["run_id"], "loss");
  MetricSeries c = store.metrics(resumed["run_id"], "loss");
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 6u);
  ASSERT_EQ(c.size(), 6u);
  EXPECT_EQ(c.steps.front(), 6);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(b.values[i], a.values[i]) << "step " << i;
    EXPECT_NEAR(c.values[i], a.values[6 + i], 1e-6 * std::fabs(a.values[6 + i]))
        << "step " << 6 + i;
  }
  auto run = store.get_run(resumed["run_id"]);
  EXPECT_EQ(run->summary["resumed_from"]["step"], 6);

  // Resume errors: unknown run, changed configuration, nothing left to do.
  r = cli("train --resume 42");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "no run with id 42")) << r.out;
  r = cli("train --resume 1 --lr 0.1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.out, "--fork")) << r.out;
  r = cli("train --resume 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.out, "already reached step 12")) << r.out;
  r = cli("train --resume x1");
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(CliRuns, ResumeRejectsAModifiedOrMissingCheckpoint) {
  nlohmann::json j = train("--steps 6");
  const std::string ck = j["checkpoint"];
  std::string bytes = read_bytes(ck + "/model.safetensors");
  bytes[bytes.size() - 3] ^= 0x55;
  write_bytes(ck + "/model.safetensors", bytes);
  auto r = cli("train --resume 1 --steps 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, ck + "/model.safetensors")) << r.out;
  EXPECT_TRUE(contains(r.out, "SHA-256")) << r.out;
  fs::remove_all(dir_ / "db/runs/1");
  r = cli("train --resume 1 --steps 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "no checkpoint to resume from")) << r.out;
}

TEST_F(CliRuns, ALiveRunIsNeitherResumedNorDeleted) {
  {
    ExperimentStore store(db_);
    RunRecord r;
    r.name = "live";
    r.pid = getpid();  // this test process: alive, so the run stays `running`
    store.create_run(r);
  }
  auto r = cli("train --resume 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "still running")) << r.out;
  r = cli("runs delete 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "still running")) << r.out;
  EXPECT_EQ(cli("runs delete 1 --force").exit_code, 0);
}

TEST_F(CliRuns, ForkWithOverrides) {
  train();
  auto r =
      cli("train --fork 1 --set model.block.n_heads=4 --set train.learning_rate=3e-4 --steps 4 "
          "--json --quiet",
          false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.last_line());
  {
    auto store = ExperimentStore::open_readonly(db_);
    auto run = store.get_run(j["run_id"]);
    EXPECT_EQ(run->parent_run_id, 1);
    EXPECT_EQ(run->model_config["block"]["n_heads"], 4);
    EXPECT_EQ(run->train_config["learning_rate"], 3e-4);
    EXPECT_EQ(run->train_config["max_steps"], 4);
    EXPECT_EQ(run->train_config["seq_len"], 32);  // everything else from run 1
    EXPECT_EQ(run->name, "tiny (fork)");
    EXPECT_EQ(run->summary["forked_from"]["run"], 1);
    EXPECT_FALSE(run->summary["forked_from"]["checkpoint"].is_null());
    EXPECT_EQ(store.metrics(j["run_id"], "loss").steps.front(), 0);  // a new run from step 0
  }
  // Bad overrides: clear messages naming the field.
  r = cli("train --fork 1 --set model.block.n_head=4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "unknown key 'n_head'; did you mean 'n_heads'?")) << r.out;
  r = cli("train --fork 1 --set model.block.n_heads=five");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "model.block.n_heads: expected integer")) << r.out;
  r = cli("train --fork 1 --set model.block.n_heads=5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "divisible")) << r.out;
  r = cli("train --fork 1 --set learning_rate=1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.out, "must start with 'model.' or 'train.'")) << r.out;
  r = cli("train --fork 1 --set train.learning_rate");
  EXPECT_EQ(r.exit_code, 2);
  r = cli("train --fork 1 --set model.block.d_model.x=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "'model.block.d_model' is a value")) << r.out;
  // Shapes that no longer fit the checkpoint: the error says how to start fresh.
  r = cli("train --fork 1 --set model.block.d_model=64");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "model.embed_tokens.weight")) << r.out;
  EXPECT_TRUE(contains(r.out, "--fresh")) << r.out;
  r = cli("train --fork 1 --set model.block.d_model=64 --fresh --steps 2 --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST_F(CliRuns, DivergedRunIsRecordedAsDiverged) {
  auto r = cli("train --config " + config_ +
                   " --optimizer sgd --lr 1000000 --warmup 0 --set train.max_grad_norm=0 --steps "
                   "40 --json --quiet",
               false);
  EXPECT_EQ(r.exit_code, 3) << r.out;
  auto j = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(j["status"], "diverged");
  auto store = ExperimentStore::open_readonly(db_);
  auto run = store.get_run(j["run_id"]);
  EXPECT_EQ(run->status, RunStatus::kDiverged);
  EXPECT_EQ(store.metrics(j["run_id"], "loss").size(), size_t(j["steps"].get<int64_t>()));
}

// The issue's crash test: SIGKILL a real training process mid-run.
TEST_F(CliRuns, SigkilledRunKeepsCommittedMetricsAndResumes) {
  fs::create_directories(dir_ / "db");
  const std::string log = dir_ / "train.log";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: a long run, committing every 20 ms, checkpointing every 50 steps.
    FILE* f = freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    execl(BLOCKLAB_CLI_PATH, BLOCKLAB_CLI_PATH, "train", "--config", config_.c_str(), "--steps",
          "1000000", "--schedule", "constant", "--checkpoint-interval", "50", "--flush-interval",
          "0.02", "--quiet", "--db", db_.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Watch from another connection until some checkpoints and 300 steps are committed.
  int64_t seen = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!fs::exists(db_)) continue;
    try {
      auto store = ExperimentStore::open_readonly(db_);
      auto latest = store.latest_step(1);
      if (latest && *latest >= 300 && !store.checkpoints(1).empty()) {
        seen = *latest;
        break;
      }
    } catch (const StoreError&) {
      // The schema is being created; try again.
    }
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << read_bytes(log);
  ASSERT_GE(seen, 300) << "training did not get far enough:\n" << read_bytes(log);

  {  // The file is intact.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "ok");
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  int64_t ck_step = 0;
  std::vector<double> killed_loss;
  {
    ExperimentStore store(db_);  // read-write open: recovers the dead run
    auto run = store.get_run(1);
    EXPECT_EQ(run->status, RunStatus::kInterrupted);
    EXPECT_TRUE(contains(run->status_message, std::to_string(pid))) << run->status_message;
    MetricSeries loss = store.metrics(1, "loss");
    ASSERT_GE(int64_t(loss.size()), seen + 1);  // everything committed before the kill
    for (size_t i = 0; i < loss.size(); ++i) ASSERT_EQ(loss.steps[i], int64_t(i));  // no gaps
    killed_loss = loss.values;
    auto ck = latest_checkpoint(store, 1);
    ASSERT_TRUE(ck);
    ck_step = ck->step;
    EXPECT_EQ(ck_step % 50, 0);
  }
  // Resume from the last checkpoint: the overlapping steps match the killed run.
  const int64_t until = ck_step + 20;
  auto r = cli("train --resume 1 --steps " + std::to_string(until) + " --json --quiet", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(j["parent_run_id"], 1);
  EXPECT_EQ(j["steps"], until);
  auto store = ExperimentStore::open_readonly(db_);
  MetricSeries resumed = store.metrics(j["run_id"], "loss");
  ASSERT_EQ(resumed.size(), 20u);
  EXPECT_EQ(resumed.steps.front(), ck_step);
  size_t overlap = 0;
  for (size_t i = 0; i < resumed.size(); ++i) {
    const size_t step = size_t(ck_step) + i;
    if (step >= killed_loss.size()) break;
    EXPECT_NEAR(resumed.values[i], killed_loss[step], 1e-6 * std::fabs(killed_loss[step])) << step;
    ++overlap;
  }
  std::printf(
      "killed after %zu committed steps (%lld seen by the reader); resumed from step %lld, "
      "%zu overlapping steps identical\n",
      killed_loss.size(), (long long)seen + 1, (long long)ck_step, overlap);
}

}  // namespace
}  // namespace bl
