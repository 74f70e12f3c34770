// blocklab-cli sweep with real processes: local worker processes, a sweep
// killed with SIGKILL and continued, the Slurm scripts run by bash as Slurm
// would run them (array tasks, then the collection job), and submission
// through a stand-in sbatch.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli_support.h"
#include "expect_error.h"
#include "store/experiment_store.h"
#include "sweep/sweep_spec.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::run_cli;
using test::TempDir;
using test::write_bytes;

// d_model 32, 2 layers, batch 2, seq 32: well under a millisecond per step.
json tiny_config() {
  return json::parse(R"({
  "model": {"name": "tiny", "n_layers": 2,
            "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 2, "max_steps": 12, "batch_size": 2, "seq_len": 32,
            "eval_interval": 6, "eval_batches": 2, "checkpoint_interval": 6, "seed": 7, "threads": 1}
})");
}

std::vector<RunRecord> sweep_runs(const std::string& db, int64_t sweep_id) {
  ExperimentStore s = ExperimentStore::open_readonly(db);
  RunFilter f;
  f.sweep_id = sweep_id;
  f.newest_first = false;
  return s.list_runs(f);
}

class CliSweep : public ::testing::Test {
 protected:
  void SetUp() override { db_ = dir_ / "db/experiments.db"; }
  std::string write_spec(const json& j, const std::string& name = "spec.json") {
    const std::string p = dir_ / name;
    write_bytes(p, j.dump(2));
    return p;
  }
  TempDir dir_;
  std::string db_;
};

TEST_F(CliSweep, LocalWorkersRunEveryTrialOnceAndRecordTheSweep) {
  const std::string spec = write_spec({{"name", "lr-seeds"},
                                       {"config", tiny_config()},
                                       {"grid", {{"train.learning_rate", {0.003, 0.001}}}},
                                       {"seeds", {1, 2}}});
  auto r = run_cli("sweep " + spec + " --workers 2 --db " + db_ + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "4 trials")) << r.out;
  const json summary = json::parse(r.last_line());
  EXPECT_EQ(summary["done"], 4);
  const int64_t sweep_id = summary["sweep_id"].get<int64_t>();

  const SweepSpec s = load_sweep_spec(spec);
  const auto runs = sweep_runs(db_, sweep_id);
  ASSERT_EQ(runs.size(), 4u);
  std::set<int64_t> trials;
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  for (const RunRecord& run : runs) {
    ASSERT_TRUE(run.sweep_trial);
    trials.insert(*run.sweep_trial);
    const SweepTrial t = sweep_trial(s, *run.sweep_trial);
    EXPECT_EQ(run.status, RunStatus::kCompleted);
    EXPECT_EQ(run.train_config["seed"], *t.seed);
    EXPECT_DOUBLE_EQ(run.train_config["learning_rate"].get<double>(),
                     t.params["train.learning_rate"].get<double>());
    // Two workers share the machine: threads per run = max(1, hardware threads / 2).
    EXPECT_EQ(run.train_config["threads"], std::max<int64_t>(1, hw / 2));
    EXPECT_EQ(run.name, "lr-seeds #" + std::to_string(*run.sweep_trial));
  }
  EXPECT_EQ(trials, (std::set<int64_t>{0, 1, 2, 3}));

  // The runs list shows the sweep column and filters by it.
  r = run_cli("runs list --sweep " + std::to_string(sweep_id) + " --db " + db_);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "SWEEP")) << r.out;
  EXPECT_TRUE(contains(r.out, std::to_string(sweep_id) + "/3")) << r.out;

  // sweep show: every trial with its values, run and val loss, and the best one.
  r = run_cli("sweep show " + std::to_string(sweep_id) + " --json --db " + db_, false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json shown = json::parse(r.out);
  EXPECT_EQ(shown["trials"], 4);
  EXPECT_EQ(shown["with_result"], 4);
  ASSERT_EQ(shown["rows"].size(), 4u);
  double best = 1e9;
  int64_t best_trial = -1;
  for (const json& row : shown["rows"]) {
    EXPECT_EQ(row["status"], "completed");
    EXPECT_EQ(row["params"], sweep_trial(s, row["trial"].get<int64_t>()).params);
    ASSERT_TRUE(row["val_loss"].is_number()) << row.dump();
    if (row["val_loss"].get<double>() < best) {
      best = row["val_loss"].get<double>();
      best_trial = row["trial"].get<int64_t>();
    }
  }
  EXPECT_EQ(shown["best_trial"], best_trial);
  r = run_cli("sweep show " + std::to_string(sweep_id) + " --db " + db_);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "best: trial " + std::to_string(best_trial))) << r.out;
  r = run_cli("sweep list --json --db " + db_, false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json listed = json::parse(r.out);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["name"], "lr-seeds");
  EXPECT_EQ(listed[0]["status"], "completed");
  EXPECT_EQ(listed[0]["with_result"], 4);
  r = run_cli("sweep show 99 --db " + db_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "no sweep with id 99")) << r.out;

  // The same spec again finds the finished sweep and runs nothing.
  r = run_cli("sweep " + spec + " --db " + db_);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "is complete")) << r.out;
  EXPECT_EQ(sweep_runs(db_, sweep_id).size(), 4u);
  // --new starts a separate sweep of the same spec.
  r = run_cli("sweep " + spec + " --new --workers 1 --db " + db_ + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(json::parse(r.last_line())["sweep_id"], sweep_id);
}

TEST_F(CliSweep, BadSpecsAreRefusedNamingTheField) {
  auto r =
      run_cli("sweep " + write_spec({{"grid", {{"train.learning_rate", 0.1}}}}) + " --db " + db_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "grid.train.learning_rate: must be a non-empty array")) << r.out;
  r = run_cli("sweep " +
              write_spec({{"config", tiny_config()}, {"grid", {{"model.block.n_heads", {2, 3}}}}}) +
              " --db " + db_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "trial 1")) << r.out;
  EXPECT_TRUE(contains(r.out, "n_heads")) << r.out;
  EXPECT_FALSE(fs::exists(db_) && !sweep_runs(db_, 1).empty());
  r = run_cli("sweep --resume 42 --db " + db_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "no sweep with id 42")) << r.out;
  r = run_cli("sweep " + write_spec({{"seeds", 1}}) + " --max-parallel 2 --db " + db_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.out, "--max-parallel applies to --slurm only")) << r.out;
}

// Starts blocklab-cli in its own process group (so the test can kill the
// sweep and its workers together), output to `log`.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), fileno(stderr));
    std::vector<char*> av = {const_cast<char*>(BLOCKLAB_CLI_PATH)};
    for (const std::string& a : args) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    execv(BLOCKLAB_CLI_PATH, av.data());
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

TEST_F(CliSweep, KilledSweepContinuesWithTheTrialsNotCompleted) {
  // Trial 1 is long and checkpoints often: it is killed midway and resumed
  // from its checkpoint; trials 0 and 2 are short.
  json cfg = tiny_config();
  cfg["train"]["checkpoint_interval"] = 20;
  cfg["train"]["eval_interval"] = 0;
  const std::string spec = write_spec(
      {{"name", "killed"}, {"config", cfg}, {"grid", {{"train.max_steps", {20, 2000, 25}}}}});
  const pid_t pid = spawn_cli({"sweep", spec, "--workers", "1", "--threads", "1", "--db", db_},
                              dir_ / "sweep.log");
  // Wait until trial 0 is done and trial 1 has a checkpoint, then kill everything.
  std::optional<RunRecord> killed;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (!killed && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!fs::exists(db_)) continue;
    try {
      ExperimentStore s = ExperimentStore::open_readonly(db_);
      for (const RunRecord& r : s.list_runs())
        if (r.sweep_trial == 1 && r.status == RunStatus::kRunning && !s.checkpoints(r.id).empty())
          killed = r;
    } catch (const StoreError&) {  // not created or not migrated yet
    }
  }
  kill(-pid, SIGKILL);
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(killed) << "trial 1 never checkpointed: " << test::read_bytes(dir_ / "sweep.log");
  const int64_t sweep_id = *killed->sweep_id;

  auto r = run_cli("sweep " + spec + " --workers 1 --threads 1 --db " + db_);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "continuing")) << r.out;
  EXPECT_TRUE(contains(r.out, "trial 1 (resumed): completed")) << r.out;
  EXPECT_TRUE(contains(r.out, "3 of 3 trials done")) << r.out;

  std::map<int64_t, std::vector<RunRecord>> by_trial;
  for (const RunRecord& run : sweep_runs(db_, sweep_id)) by_trial[*run.sweep_trial].push_back(run);
  ASSERT_EQ(by_trial[0].size(), 1u);  // done before the kill: not run again
  EXPECT_EQ(by_trial[0][0].status, RunStatus::kCompleted);
  ASSERT_EQ(by_trial[1].size(), 2u);
  EXPECT_EQ(by_trial[1][0].id, killed->id);
  EXPECT_EQ(by_trial[1][0].status, RunStatus::kInterrupted);
  EXPECT_EQ(by_trial[1][1].status, RunStatus::kCompleted);
  EXPECT_EQ(by_trial[1][1].parent_run_id, killed->id);  // resumed from its checkpoint
  EXPECT_TRUE(by_trial[1][1].summary.contains("resumed_from")) << by_trial[1][1].summary.dump();
  ASSERT_EQ(by_trial[2].size(), 1u);
  EXPECT_EQ(by_trial[2][0].status, RunStatus::kCompleted);
}

// Runs a generated Slurm script with bash the way one array task (or the
// collection job) would run it.
test::CliResult run_script(const std::string& script, const std::string& env) {
  test::CliResult r;
  FILE* p = popen((env + " bash " + script + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST_F(CliSweep, SlurmScriptsRunEachTrialByTaskIdAndTheCollectionImportsThem) {
  const std::string spec = write_spec({{"name", "slurm-grid"},
                                       {"config", tiny_config()},
                                       {"grid", {{"train.learning_rate", {0.003, 0.002, 0.001}}}}});
  const std::string shared = dir_ / "shared";
  auto r = run_cli("sweep " + spec + " --slurm --dry-run --shared " + shared +
                   " --max-parallel 2 --time 00:10:00 --db " + db_);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "dry run: nothing submitted")) << r.out;
  EXPECT_FALSE(fs::exists(db_));  // a dry run leaves the store alone
  const std::string array = test::read_bytes(shared + "/sweep.sbatch");
  EXPECT_TRUE(contains(array, "#SBATCH --array=0-2%2\n")) << array;
  EXPECT_TRUE(contains(array, "#SBATCH --time=00:10:00\n")) << array;
  EXPECT_TRUE(fs::exists(shared + "/collect.sbatch"));
  EXPECT_TRUE(fs::exists(shared + "/spec.json"));

  // The array's tasks, in an order Slurm might pick, each on its own "node".
  for (int i : {2, 0, 1}) {
    const std::string node = dir_ / ("node" + std::to_string(i));
    fs::create_directories(node);
    auto t = run_script(shared + "/sweep.sbatch", "SLURM_ARRAY_JOB_ID=77 SLURM_ARRAY_TASK_ID=" +
                                                      std::to_string(i) + " TMPDIR=" + node);
    ASSERT_EQ(t.exit_code, 0) << t.out;
    EXPECT_TRUE(contains(t.out, "trial " + std::to_string(i) + ": completed")) << t.out;
    EXPECT_TRUE(fs::is_empty(node)) << "the task's local database is removed after publishing";
  }
  // An index past the array is refused naming the count.
  r = run_cli("sweep-task " + shared + "/spec.json --index 3 --db " + (dir_ / "x.db") +
              " --publish " + shared + "/results");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.out, "--index 3: sweep 'slurm-grid' has 3 trials (0..2)")) << r.out;

  auto c = run_script(shared + "/collect.sbatch", "");
  ASSERT_EQ(c.exit_code, 0) << c.out;
  EXPECT_TRUE(contains(c.out, "imported 3 runs from 3 databases")) << c.out;
  EXPECT_TRUE(contains(c.out, "every trial has a result now; marked completed")) << c.out;
  const SweepSpec s = load_sweep_spec(spec);
  ExperimentStore store = ExperimentStore::open_readonly(db_);
  const auto runs = store.list_runs({.newest_first = false});
  ASSERT_EQ(runs.size(), 3u);
  for (const RunRecord& run : runs) {
    ASSERT_TRUE(run.sweep_trial);
    EXPECT_EQ(run.status, RunStatus::kCompleted);
    EXPECT_EQ(run.sweep_id, runs[0].sweep_id);
    EXPECT_DOUBLE_EQ(run.train_config["learning_rate"].get<double>(),
                     sweep_trial(s, *run.sweep_trial).params["train.learning_rate"].get<double>());
    const auto cks = store.checkpoints(run.id);
    ASSERT_FALSE(cks.empty());
    EXPECT_TRUE(fs::exists(cks.back().path + "/model.safetensors")) << cks.back().path;
    EXPECT_EQ(cks.back().path.rfind(fs::path(db_).parent_path().string(), 0), 0u)
        << cks.back().path;
  }
  // A resumable checkpoint: train --resume of an imported run works from the main store.
  r = run_cli("train --resume " + std::to_string(runs[0].id) + " --steps 14 --quiet --db " + db_);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  // The collection job again: nothing new.
  c = run_script(shared + "/collect.sbatch", "");
  EXPECT_TRUE(contains(c.out, "imported 0 runs from 3 databases")) << c.out;
}

TEST_F(CliSweep, SlurmSubmitsTheArrayThenTheCollectionAfterIt) {
  // A stand-in sbatch that records its arguments and answers like --parsable.
  const std::string fake = dir_ / "sbatch";
  const std::string calls = dir_ / "calls.txt";
  write_bytes(fake, "#!/bin/sh\necho \"$@\" >> " + calls + "\nn=$(wc -l < " + calls +
                        ")\necho $((4000 + n))\n");
  fs::permissions(fake, fs::perms::owner_all);
  const std::string spec = write_spec({{"config", tiny_config()}, {"seeds", 5}});
  setenv("BLOCKLAB_SBATCH", fake.c_str(), 1);
  auto r = run_cli("sweep " + spec + " --slurm --shared " + (dir_ / "sh3") +
                   " --partition debug --db " + db_ + " --json");
  unsetenv("BLOCKLAB_SBATCH");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string log = test::read_bytes(calls);
  EXPECT_TRUE(contains(log, "--parsable " + (dir_ / "sh3") + "/sweep.sbatch\n")) << log;
  EXPECT_TRUE(contains(
      log, "--parsable --dependency=afterany:4001 " + (dir_ / "sh3") + "/collect.sbatch\n"))
      << log;
  const json j = json::parse(r.last_line());
  EXPECT_EQ(j["array_job"], "4001");
  EXPECT_EQ(j["collect_job"], "4002");
  EXPECT_EQ(j["trials"], 5);
  EXPECT_TRUE(contains(test::read_bytes(dir_ / "sh3/sweep.sbatch"), "#SBATCH --partition=debug\n"));
}

TEST_F(CliSweep, SlurmWithoutSbatchIsRefusedBeforeAnythingIsWrittenOrRecorded) {
  const std::string spec = write_spec({{"config", tiny_config()}, {"seeds", 2}});
  setenv("BLOCKLAB_SBATCH", (dir_ / "no-such-sbatch").c_str(), 1);
  auto r = run_cli("sweep " + spec + " --slurm --shared " + (dir_ / "sh4") + " --db " + db_);
  unsetenv("BLOCKLAB_SBATCH");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "no-such-sbatch is not found")) << r.out;
  EXPECT_TRUE(contains(r.out, "dry run")) << r.out;
  EXPECT_FALSE(fs::exists(db_));  // no sweep recorded as submitted
  EXPECT_FALSE(fs::exists(dir_ / "sh4"));
  // A partition of two words cannot go into an #SBATCH line.
  r = run_cli("sweep " + spec + " --slurm --dry-run --partition 'a b' --db " + db_);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "--partition and --time take one word, got 'a b'")) << r.out;
}

}  // namespace
}  // namespace bl
