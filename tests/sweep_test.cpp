// Sweeps without training: spec parsing and its errors, the deterministic
// trial expansion (grid x random x seeds, budget), the schema v3 migration
// (run UUIDs for old runs), the trial queue, Slurm script generation, and
// publishing + importing task databases (duplicates, partial publishes,
// unreadable files, failed and running runs, checkpoint files).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "expect_error.h"
#include "store/experiment_store.h"
#include "store/schema.h"
#include "sweep/run_transfer.h"
#include "sweep/slurm_script.h"
#include "sweep/sweep_report.h"
#include "sweep/sweep_spec.h"
#include "sweep/sweep_store.h"
#include "temp_files.h"
#include "train/store_logger.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

SweepSpec parse(const json& j) {
  return parse_sweep_spec(j, "spec.json", "/base");
}

std::string spec_error(const json& j) {
  return test::error_of<SweepSpecError>([&] { parse(j); });
}

// ---------------------------------------------------------------- spec

TEST(SweepSpec, GridTimesSeedsInOrderSeedsInnermost) {
  const SweepSpec s =
      parse({{"name", "g"},
             {"grid", {{"train.learning_rate", {0.001, 0.0003}}, {"model.n_layers", {1, 2, 3}}}},
             {"seeds", {7, 8}}});
  ASSERT_EQ(s.trial_count(), 12);
  const auto trials = expand_sweep(s);
  // Axes in name order (model.n_layers, train.learning_rate), the last fastest; seeds innermost.
  EXPECT_EQ(trials[0].set,
            (std::vector<std::string>{"model.n_layers=1", "train.learning_rate=0.001"}));
  EXPECT_EQ(trials[0].seed, 7);
  EXPECT_EQ(trials[1].seed, 8);
  EXPECT_EQ(trials[1].set, trials[0].set);
  EXPECT_EQ(trials[2].set,
            (std::vector<std::string>{"model.n_layers=1", "train.learning_rate=0.0003"}));
  EXPECT_EQ(trials[11].set,
            (std::vector<std::string>{"model.n_layers=3", "train.learning_rate=0.0003"}));
  EXPECT_EQ(trials[11].params,
            (json{{"model.n_layers", 3}, {"train.learning_rate", 0.0003}, {"seed", 8}}));
  std::set<std::vector<std::string>> distinct;
  for (const auto& t : trials) distinct.insert(t.set);
  EXPECT_EQ(distinct.size(), 6u);
}

TEST(SweepSpec, RandomDrawsAreDeterministicInRangeAndSeedDependent) {
  const json j = {
      {"random",
       {{"train.learning_rate", {{"distribution", "log_uniform"}, {"min", 1e-4}, {"max", 1e-2}}},
        {"train.weight_decay", {{"distribution", "uniform"}, {"min", 0}, {"max", 0.5}}},
        {"train.warmup_steps", {{"distribution", "int_uniform"}, {"min", 2}, {"max", 4}}},
        {"train.optimizer", {{"distribution", "choice"}, {"values", {"adamw", "lion"}}}}}},
      {"samples", 200},
      {"seeds", 2},
      {"seed", 42}};
  const SweepSpec a = parse(j), b = parse(j);
  ASSERT_EQ(a.trial_count(), 400);
  std::set<int64_t> warmups;
  std::set<std::string> opts;
  double lo = 1, hi = 0;
  for (int64_t i = 0; i < a.trial_count(); ++i) {
    const SweepTrial t = sweep_trial(a, i);
    EXPECT_EQ(t.params, sweep_trial(b, i).params) << i;  // same on every machine and process
    const double lr = t.params["train.learning_rate"].get<double>();
    EXPECT_GE(lr, 1e-4);
    EXPECT_LT(lr, 1e-2);
    lo = std::min(lo, lr);
    hi = std::max(hi, lr);
    const double wd = t.params["train.weight_decay"].get<double>();
    EXPECT_GE(wd, 0);
    EXPECT_LT(wd, 0.5);
    warmups.insert(t.params["train.warmup_steps"].get<int64_t>());
    opts.insert(t.params["train.optimizer"].get<std::string>());
    if (i % 2 == 1) {  // seeds of one configuration share its draws
      json prev = sweep_trial(a, i - 1).params, cur = t.params;
      prev.erase("seed");
      cur.erase("seed");
      EXPECT_EQ(prev, cur);
    }
  }
  EXPECT_EQ(warmups, (std::set<int64_t>{2, 3, 4}));
  EXPECT_EQ(opts, (std::set<std::string>{"adamw", "lion"}));
  EXPECT_LT(lo, 3e-4);  // log-uniform: the low decade is sampled as often as the high one
  EXPECT_GT(hi, 3e-3);
  json other = j;
  other["seed"] = 43;
  EXPECT_NE(sweep_trial(parse(other), 0).params, sweep_trial(a, 0).params);
}

TEST(SweepSpec, BudgetCapsTrialsAndSizesRandomSearch) {
  SweepSpec s =
      parse({{"grid", {{"train.learning_rate", {1, 2, 3}}}}, {"seeds", 2}, {"budget", 4}});
  EXPECT_EQ(s.full_count(), 6);
  EXPECT_EQ(s.trial_count(), 4);
  EXPECT_THROW(sweep_trial(s, 4), std::out_of_range);
  // Random axes without samples: as many draws as the budget needs.
  s = parse({{"random",
              {{"train.learning_rate", {{"distribution", "uniform"}, {"min", 0.1}, {"max", 1}}}}},
             {"budget", 5}});
  EXPECT_EQ(s.samples, 5);
  EXPECT_EQ(s.trial_count(), 5);
}

TEST(SweepSpec, ErrorsNameTheFieldAndTheRule) {
  EXPECT_HAS(spec_error({{"grid", {{"train.lr", json::array()}}}}),
             "spec.json: grid.train.lr: must be a non-empty array");
  EXPECT_HAS(spec_error({{"grid", {{"lr", {1}}}}}), "grid.lr: an axis is a config field path");
  EXPECT_HAS(
      spec_error(
          {{"random", {{"train.lr", {{"distribution", "log_uniform"}, {"min", 0}, {"max", 1}}}}},
           {"budget", 2}}),
      "random.train.lr.min: must be > 0 for log_uniform");
  EXPECT_HAS(
      spec_error({{"random", {{"train.lr", {{"distribution", "gauss"}}}}}, {"budget", 2}}),
      "random.train.lr.distribution: must be one of uniform, log_uniform, int_uniform, choice");
  EXPECT_HAS(
      spec_error({{"random", {{"train.lr", {{"distribution", "uniform"}, {"min", 2}, {"max", 1}}}}},
                  {"budget", 2}}),
      "random.train.lr: min (2) must be <= max (1)");
  EXPECT_HAS(spec_error({{"random",
                          {{"train.lr", {{"distribution", "uniform"}, {"min", 0}, {"max", 1}}}}}}),
             "samples: random axes need samples or budget");
  EXPECT_HAS(spec_error({{"seeds", 0}}), "seeds: must be in [1, 10000], got 0");
  EXPECT_HAS(spec_error({{"seeds", 2}, {"budget", "ten"}}),
             "budget: must be an integer, got string");
  EXPECT_HAS(spec_error({{"seeds", 2}, {"grids", {}}}), "grids: unknown key");
  EXPECT_HAS(spec_error({{"name", "x"}}), "a sweep needs at least one of grid, random or seeds");
  EXPECT_HAS(spec_error({{"seeds", 2}, {"preset", "gpt-tiny"}, {"config", "c.json"}}),
             "preset: give preset or config, not both");
  EXPECT_HAS(
      spec_error({{"grid", {{"train.seed", {1}}}},
                  {"random", {{"train.seed", {{"distribution", "choice"}, {"values", {1}}}}}},
                  {"samples", 1}}),
      "random.train.seed: is also a grid axis");
  json huge = {{"grid", json::object()}};
  for (const char* f : {"train.a", "train.b", "train.c", "train.d"})
    huge["grid"][f] =
        json::array({1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
                     18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34});
  EXPECT_HAS(spec_error(huge), "more than 1000000 trials");
}

// Undefined behaviour in the expansion, reported by UBSan when the sanitized
// fuzz_sweep_spec ran boundary seeds (fuzz/corpus/sweep_spec/
// int-uniform-extremes.json, grid-overflow.json; 60 s of fuzzing from the
// other seeds had not reached them): an int_uniform range wider than int64
// overflowed max - min, a bound of 2^63 was converted to int64 out of range,
// and 20 grid axes of 10 values overflowed the grid product while sizing a
// random search. Now each is refused, naming the field.
TEST(SweepSpec, RangesAndGridsTooLargeAreRefusedNotOverflowed) {
  const auto int_axis = [](const json& lo, const json& hi) {
    return json{
        {"random",
         {{"train.warmup_steps", {{"distribution", "int_uniform"}, {"min", lo}, {"max", hi}}}}},
        {"budget", 4}};
  };
  EXPECT_HAS(
      spec_error(int_axis(int64_t(-5'000'000'000'000'000'000), int64_t(5'000'000'000'000'000'000))),
      "spec.json: random.train.warmup_steps.min: must be in [-2^53, 2^53] for int_uniform");
  EXPECT_HAS(spec_error(int_axis(0, std::numeric_limits<int64_t>::max())),
             "random.train.warmup_steps.max: must be in [-2^53, 2^53] for int_uniform, got "
             "9223372036854775807");
  EXPECT_HAS(spec_error(int_axis(0, std::numeric_limits<uint64_t>::max())),
             "random.train.warmup_steps.max: must be in [-2^53, 2^53]");
  // The widest range allowed draws inside it.
  const int64_t lim = int64_t(1) << 53;
  const SweepSpec wide = parse(int_axis(-lim, lim));
  for (const SweepTrial& t : expand_sweep(wide)) {
    const int64_t v = t.params["train.warmup_steps"].get<int64_t>();
    EXPECT_GE(v, -lim);
    EXPECT_LE(v, lim);
  }
  json grid = json::object();
  for (int a = 0; a < 20; ++a)
    grid["train.axis" + std::to_string(a)] = json::array({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_HAS(
      spec_error(
          {{"grid", grid},
           {"random", {{"train.dropout", {{"distribution", "uniform"}, {"min", 0}, {"max", 0.1}}}}},
           {"budget", 5}}),
      "spec.json: grid: the sweep expands to more than 1000000 trials");
}

TEST(SweepSpec, TrialConfigsAreCheckedLikeSet) {
  // An unknown field and a broken rule are named with the trial that has them.
  SweepSpec s = parse({{"preset", "gpt-tiny"}, {"grid", {{"train.learnin_rate", {0.1}}}}});
  EXPECT_HAS(test::error_of<SweepSpecError>([&] { check_sweep_trials(s); }), "trial 0");
  EXPECT_HAS(test::error_of<SweepSpecError>([&] { check_sweep_trials(s); }), "learnin_rate");
  s = parse({{"preset", "gpt-tiny"}, {"grid", {{"model.block.n_heads", {4, 5}}}}});
  const std::string e = test::error_of<SweepSpecError>([&] { check_sweep_trials(s); });
  EXPECT_HAS(e, "trial 1");
  EXPECT_HAS(e, "n_heads");
  s = parse(
      {{"preset", "gpt-tiny"}, {"grid", {{"train.learning_rate", {0.001, 0.01}}}}, {"seeds", 2}});
  EXPECT_NO_THROW(check_sweep_trials(s));
  const RunSpec r = trial_run_spec(s, sweep_trial(s, 3), "/x/e.db", 9);
  EXPECT_EQ(r.preset_name, "gpt-tiny");
  EXPECT_EQ(r.set, (std::vector<std::string>{"train.learning_rate=0.01"}));
  EXPECT_EQ(r.train.seed, 1);
  EXPECT_EQ(r.sweep_id, 9);
  EXPECT_EQ(r.sweep_trial, 3);
}

TEST(SweepSpec, RelativePathsAreResolvedFromTheSpecFile) {
  TempDir dir;
  fs::create_directories(dir / "sub");
  test::write_bytes(dir / "sub/spec.json",
                    R"({"config": "model.json", "data": "../corpus.txt", "seeds": 1})");
  const SweepSpec s = load_sweep_spec(dir / "sub/spec.json");
  EXPECT_EQ(s.config_path, fs::path(dir / "sub/model.json").lexically_normal().string());
  EXPECT_EQ(s.data_path, fs::path(dir / "corpus.txt").lexically_normal().string());
  EXPECT_EQ(s.source["data"], s.data_path);  // what a Slurm task reads from the shared copy
  EXPECT_EQ(s.name, "spec");
  test::write_bytes(dir / "bad.json", "{\"seeds\": ");
  EXPECT_HAS(test::error_of<SweepSpecError>([&] { load_sweep_spec(dir / "bad.json"); }),
             "bad.json: not valid JSON");
}

// ---------------------------------------------------------------- store

int64_t sql_int(const std::string& db, const std::string& sql) {
  sqlite3* c = nullptr;
  sqlite3_open(db.c_str(), &c);
  sqlite3_stmt* s = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(c, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW)
    v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(c);
  return v;
}

TEST(SweepStoreSchema, MigrationFromV2GivesOldRunsUniqueUuids) {
  TempDir dir;
  const std::string db = dir / "v2.db";
  {
    sqlite3* c = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &c), SQLITE_OK);
    std::vector<store::Migration> v2(store::migrations().begin(), store::migrations().begin() + 2);
    store::migrate(c, db, v2);
    store::exec_sql(c,
                    "INSERT INTO runs(id, name, status, created_at) VALUES "
                    "(1, 'a', 'completed', 1), (2, 'b', 'failed', 2), (3, 'c', 'running', 3)",
                    "seed");
    sqlite3_close(c);
  }
  ExperimentStore s(db);
  EXPECT_EQ(s.schema_version(), 3);
  std::set<std::string> uuids;
  for (const RunRecord& r : s.list_runs()) {
    EXPECT_EQ(r.uuid.size(), 36u) << r.uuid;
    EXPECT_EQ(r.uuid[14], '4');
    EXPECT_FALSE(r.sweep_id);
    uuids.insert(r.uuid);
  }
  EXPECT_EQ(uuids.size(), 3u);
  RunRecord n;
  n.name = "new";
  const int64_t id = s.create_run(n);
  EXPECT_EQ(s.get_run(id)->uuid.size(), 36u);
  EXPECT_FALSE(uuids.count(s.get_run(id)->uuid));
  RunRecord dup;
  dup.uuid = *uuids.begin();
  EXPECT_THROW(s.create_run(dup), StoreError);  // unique
}

TEST(SweepStoreQueue, ClaimsEachTrialOnceAndRequeuesDeadWorkers) {
  TempDir dir;
  const std::string db = dir / "e.db";
  SweepStore a(db), b(db);
  const SweepRecord sw = a.create("s", "{\"seeds\":3}", "", "running");
  EXPECT_EQ(sw.uuid.size(), 36u);
  EXPECT_EQ(a.find_by_spec("{\"seeds\":3}")->id, sw.id);
  EXPECT_EQ(b.find_by_uuid(sw.uuid)->id, sw.id);
  a.ensure_trials(sw.id, 3);
  a.ensure_trials(sw.id, 3);  // idempotent
  EXPECT_EQ(a.counts(sw.id).pending, 3);
  const auto c0 = a.claim(sw.id), c1 = b.claim(sw.id), c2 = a.claim(sw.id);
  ASSERT_TRUE(c0 && c1 && c2);
  EXPECT_EQ(std::set<int64_t>({c0->trial, c1->trial, c2->trial}), (std::set<int64_t>{0, 1, 2}));
  EXPECT_FALSE(b.claim(sw.id));
  a.finish_trial(sw.id, c0->trial, true);
  a.finish_trial(sw.id, c1->trial, false);
  // c2 is still "running" in this live process: only the failed one is requeued.
  EXPECT_EQ(a.requeue_unfinished(sw.id), 1);
  // A claim whose process is gone is requeued, keeping the earlier attempt's run.
  {
    ExperimentStore s(db);
    RunRecord r;
    const int64_t run = s.create_run(r);
    a.set_trial_run(sw.id, c2->trial, run);
  }
  sqlite3* c = nullptr;
  sqlite3_open(db.c_str(), &c);
  store::exec_sql(
      c,
      ("UPDATE sweep_trials SET pid = 999999999 WHERE trial = " + std::to_string(c2->trial))
          .c_str(),
      "t");
  sqlite3_close(c);
  EXPECT_EQ(a.requeue_unfinished(sw.id), 1);
  const auto again = a.claim(sw.id);
  ASSERT_TRUE(again);
  const auto again2 = a.claim(sw.id);
  ASSERT_TRUE(again2);
  const TrialClaim& resumed = again->trial == c2->trial ? *again : *again2;
  EXPECT_TRUE(resumed.run_id.has_value());
  EXPECT_EQ(a.counts(sw.id).done, 1);
  EXPECT_EQ(a.counts(sw.id).running, 2);
}

// ---------------------------------------------------------------- slurm

TEST(SlurmScript, ArrayMapsTaskIdToTrialAndCollectImportsAfter) {
  SlurmOptions o;
  o.cli = "/opt/bl/blocklab-cli";
  o.spec_path = "/shared/s/spec.json";
  o.shared_dir = "/shared/s";
  o.main_db = "/home/me/experiments.db";
  o.sweep_uuid = "1234";
  o.sweep_name = "lr grid";
  o.trials = 12;
  o.max_parallel = 3;
  o.threads = 4;
  o.partition = "cpu";
  o.time_limit = "01:00:00";
  const std::string a = slurm_array_script(o);
  EXPECT_HAS(a, "#!/bin/bash\n");
  EXPECT_HAS(a, "#SBATCH --array=0-11%3\n");
  EXPECT_HAS(a, "#SBATCH --job-name=blocklab-sweep-lr_grid\n");
  EXPECT_HAS(a, "#SBATCH --cpus-per-task=4\n");
  EXPECT_HAS(a, "#SBATCH --partition=cpu\n");
  EXPECT_HAS(a, "#SBATCH --time=01:00:00\n");
  EXPECT_HAS(a, "#SBATCH --output=/shared/s/logs/task-%A_%a.out\n");
  EXPECT_HAS(a,
             "'/opt/bl/blocklab-cli' sweep-task '/shared/s/spec.json' --index "
             "\"$SLURM_ARRAY_TASK_ID\" --sweep-uuid '1234' --threads 4 --db "
             "\"$work/experiments.db\" --publish '/shared/s/results'");
  EXPECT_HAS(a, "work=${TMPDIR:-/tmp}/blocklab-sweep-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}");
  // #SBATCH lines must come before the first command.
  EXPECT_LT(a.rfind("#SBATCH"), a.find("set -euo"));
  o.max_parallel = 0;
  EXPECT_HAS(slurm_array_script(o), "#SBATCH --array=0-11\n");
  const std::string c = slurm_collect_script(o);
  EXPECT_HAS(
      c, "'/opt/bl/blocklab-cli' runs import '/shared/s/results' --db '/home/me/experiments.db'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
}

// ---------------------------------------------------------------- publish + import

// A task-like database with one sweep and `n` runs of `status`, each with
// metrics, an eval, a sample, a tag and a checkpoint directory on disk.
struct TaskDb {
  std::string path;
  std::vector<std::string> uuids;
};

TaskDb make_task_db(const std::string& dir, const std::string& sweep_uuid, int n,
                    RunStatus status) {
  fs::create_directories(dir);
  TaskDb t{dir + "/experiments.db", {}};
  int64_t sweep_id = 0;
  {
    SweepStore sw(t.path);
    sweep_id = sw.create("s", "{}", sweep_uuid, "running").id;
  }
  ExperimentStore s(t.path);
  for (int i = 0; i < n; ++i) {
    RunRecord r;
    r.name = "trial " + std::to_string(i);
    r.sweep_id = sweep_id;
    r.sweep_trial = i;
    r.tags = {"sweep"};
    const int64_t id = s.create_run(r);
    for (int step = 0; step < 5; ++step) s.log_metric(id, step, step * 0.1, "loss", 5.0 - step);
    s.log_eval(id, 4, "val_loss", 1.5 + i);
    s.log_sample(id, 4, "To be", "To be or not", 0.8);
    const std::string ck = run_checkpoint_dir(t.path, id, 5);
    fs::create_directories(ck);
    test::write_bytes(ck + "/model.safetensors", "weights of run " + std::to_string(id));
    s.add_checkpoint(id, 5, ck, "abc");
    if (status != RunStatus::kRunning) s.finish_run(id, status, {{"steps", 5}}, "");
    t.uuids.push_back(s.get_run(id)->uuid);
  }
  return t;
}

TEST(RunImport, MergesPublishedTasksOnceWithFilesStatusesAndSweep) {
  TempDir dir;
  const std::string main_db = dir / "main/experiments.db";
  const std::string pub = dir / "shared/results";
  // Two tasks: one completed run, one failed; a third still "running" when published.
  const TaskDb t0 = make_task_db(dir / "node0", "sweep-uuid-1", 1, RunStatus::kCompleted);
  const TaskDb t1 = make_task_db(dir / "node1", "sweep-uuid-1", 1, RunStatus::kFailed);
  const TaskDb t2 = make_task_db(dir / "node2", "sweep-uuid-1", 1, RunStatus::kRunning);
  const std::string p0 = publish_store(t0.path, pub, "trial-0");
  publish_store(t1.path, pub, "trial-1");
  publish_store(t2.path, pub, "trial-2");
  EXPECT_TRUE(fs::exists(p0 + "/experiments.db"));
  EXPECT_TRUE(fs::exists(p0 + "/runs/1/checkpoints/step-5/model.safetensors"));
  // The task's local disk is gone after the job: only the published copy remains.
  fs::remove_all(dir / "node0");
  fs::remove_all(dir / "node1");
  fs::remove_all(dir / "node2");
  // An unfinished publish (hidden) and a damaged file next to them.
  fs::create_directories(pub + "/.tmp-trial-3-77");
  test::write_bytes(pub + "/.tmp-trial-3-77/experiments.db", "half a database");
  fs::create_directories(pub + "/trial-9");
  test::write_bytes(pub + "/trial-9/experiments.db", "not SQLite at all, just text bytes");

  // The main store already has a run of its own and the submitted sweep.
  {
    SweepStore sw(main_db);
    sw.create("s", "{}", "sweep-uuid-1", "submitted");
    ExperimentStore s(main_db);
    RunRecord own;
    own.name = "hand-started";
    s.create_run(own);
  }
  ImportReport rep = import_runs(main_db, {pub});
  EXPECT_EQ(rep.imported, 3);
  EXPECT_EQ(rep.duplicates, 0);
  EXPECT_EQ(rep.databases, 3);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_HAS(rep.problems[0], "trial-9/experiments.db");

  ExperimentStore s(main_db);
  std::vector<RunRecord> runs = s.list_runs({.newest_first = false});
  ASSERT_EQ(runs.size(), 4u);
  std::map<std::string, RunRecord> by_uuid;
  for (const auto& r : runs) by_uuid[r.uuid] = r;
  const RunRecord& done = by_uuid.at(t0.uuids[0]);
  EXPECT_EQ(done.status, RunStatus::kCompleted);
  EXPECT_EQ(by_uuid.at(t1.uuids[0]).status, RunStatus::kFailed);
  // Published while running: nothing on this host can finish it.
  EXPECT_EQ(by_uuid.at(t2.uuids[0]).status, RunStatus::kInterrupted);
  EXPECT_HAS(by_uuid.at(t2.uuids[0]).status_message, "while its process was still running");
  ASSERT_TRUE(done.sweep_id);
  EXPECT_EQ(sql_int(main_db, "SELECT count(*) FROM sweeps"), 1);  // merged by UUID
  EXPECT_EQ(done.sweep_id, by_uuid.at(t1.uuids[0]).sweep_id);
  EXPECT_EQ(done.tags, std::vector<std::string>{"sweep"});
  EXPECT_EQ(s.metrics(done.id, "loss").values, (std::vector<double>{5, 4, 3, 2, 1}));
  ASSERT_EQ(s.evals(done.id).size(), 1u);
  EXPECT_EQ(s.evals(done.id)[0].value, 1.5);
  EXPECT_EQ(s.samples(done.id).size(), 1u);
  const auto cks = s.checkpoints(done.id);
  ASSERT_EQ(cks.size(), 1u);
  EXPECT_EQ(cks[0].path, run_checkpoint_dir(main_db, done.id, 5));
  EXPECT_EQ(test::read_bytes(cks[0].path + "/model.safetensors"), "weights of run 1");
  s.close();

  // Importing again, or the same databases by file, adds nothing.
  rep = import_runs(main_db, {pub, p0 + "/experiments.db"});
  EXPECT_EQ(rep.imported, 0);
  EXPECT_EQ(rep.duplicates, 4);
  EXPECT_EQ(sql_int(main_db, "SELECT count(*) FROM runs"), 4);
  EXPECT_EQ(sql_int(main_db, "SELECT count(*) FROM metrics"), 15);
  EXPECT_EQ(sql_int(main_db, "SELECT count(*) FROM checkpoints"), 3);
  // The target itself is never imported into itself.
  rep = import_runs(main_db, {main_db});
  EXPECT_EQ(rep.imported, 0);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_HAS(rep.problems[0], "is the target database itself");
}

TEST(RunImport, ParentLinksFollowUuidsAndMissingSourcesAreNamed) {
  TempDir dir;
  const std::string src = dir / "src/experiments.db";
  int64_t parent = 0, child = 0;
  {
    ExperimentStore s(src);
    RunRecord p;
    p.name = "parent";
    parent = s.create_run(p);
    RunRecord c;
    c.name = "child";
    c.parent_run_id = parent;
    child = s.create_run(c);
  }
  const std::string dst = dir / "dst/experiments.db";
  {
    ExperimentStore s(dst);
    for (int i = 0; i < 5; ++i) s.create_run(RunRecord{});  // shift the ids
  }
  const ImportReport rep = import_runs(dst, {src, dir / "nowhere"});
  EXPECT_EQ(rep.imported, 2);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_HAS(rep.problems[0], "nowhere: no such file or directory");
  ExperimentStore s(dst);
  const auto runs = s.list_runs({.newest_first = true});
  ASSERT_EQ(runs[0].name, "child");
  EXPECT_EQ(runs[0].parent_run_id, runs[1].id);
  EXPECT_EQ(runs[1].name, "parent");
  (void)child;
}

// ---------------------------------------------------------------- report

// Found by fuzz_run_import's "a second import adds nothing" rule on a
// hand-made input: a source run whose UUID is NULL (the v2 -> v3 migration
// adds the column without NOT NULL, so a damaged or edited file can hold one)
// was imported again by every import. Such a source is now refused whole,
// named, and the other sources are still imported.
TEST(RunImport, SourceRunWithoutUuidIsRefusedNotImportedTwice) {
  TempDir dir;
  const std::string bad = dir / "bad/experiments.db";
  fs::create_directories(dir / "bad");
  {
    sqlite3* c = nullptr;
    ASSERT_EQ(sqlite3_open(bad.c_str(), &c), SQLITE_OK);
    std::vector<store::Migration> v2(store::migrations().begin(), store::migrations().begin() + 2);
    store::migrate(c, bad, v2);
    store::exec_sql(
        c, "INSERT INTO runs(id, name, status, created_at) VALUES (1, 'a', 'completed', 1)",
        "seed");
    sqlite3_close(c);
  }
  { ExperimentStore migrate(bad); }  // to v3: run 1 gets a UUID
  {
    sqlite3* c = nullptr;
    ASSERT_EQ(sqlite3_open(bad.c_str(), &c), SQLITE_OK);
    store::exec_sql(c, "UPDATE runs SET uuid = NULL", "damage");
    sqlite3_close(c);
  }
  const TaskDb good = make_task_db(dir / "good", "sweep-uuid", 1, RunStatus::kCompleted);
  const std::string target = dir / "main.db";
  for (int round = 0; round < 2; ++round) {
    const ImportReport rep = import_runs(target, {bad, good.path});
    ASSERT_EQ(rep.problems.size(), 1u);
    EXPECT_HAS(rep.problems[0], bad + ": run 1 has no UUID (a damaged database); nothing imported");
    EXPECT_EQ(rep.imported, round == 0 ? 1 : 0);
  }
  EXPECT_EQ(ExperimentStore::open_readonly(target).list_runs().size(), 1u);
}

// Found by fuzz_run_import in 60 s (its "the target holds the runs the report
// counts" rule): a source whose schema text was edited so that runs.id is no
// longer the rowid ("INTEGER PRIMARY KEY" -> "INTEGER statusY KEY") reads
// every id as NULL; the run was counted as imported though no row was copied,
// and the rows copied after it went to the run imported before it. Such a
// source is now refused whole, named, and the other sources still import.
TEST(RunImport, SourceRunWithoutIntegerIdIsRefusedNotMiscounted) {
  TempDir dir;
  const TaskDb bad = make_task_db(dir / "bad", "sweep-uuid", 2, RunStatus::kCompleted);
  {
    sqlite3* c = nullptr;
    ASSERT_EQ(sqlite3_open(bad.path.c_str(), &c), SQLITE_OK);
    store::exec_sql(c,
                    "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = replace(sql, "
                    "'INTEGER PRIMARY KEY', 'INTEGER statusY KEY') WHERE name = 'runs'",
                    "damage");
    sqlite3_close(c);
  }
  const TaskDb good = make_task_db(dir / "good", "sweep-uuid", 1, RunStatus::kCompleted);
  const std::string target = dir / "main.db";
  const ImportReport rep = import_runs(target, {bad.path, good.path});
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_HAS(rep.problems[0], bad.path + ": run " + bad.uuids[0] +
                                  " has no integer id (a damaged database); nothing imported");
  EXPECT_EQ(rep.imported, 1);
  ExperimentStore s = ExperimentStore::open_readonly(target);
  const auto runs = s.list_runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].uuid, good.uuids[0]);
  EXPECT_EQ(s.metrics(runs[0].id, "loss").size(), 5u);
}

TEST(SweepReport, CountsTheBestAttemptOfEachTrialAndCompletesASlurmSweepOnImport) {
  TempDir dir;
  const std::string main_db = dir / "main/experiments.db";
  const json spec = {{"name", "lr"},
                     {"preset", "gpt-tiny"},
                     {"grid", {{"train.learning_rate", {0.001, 0.003, 0.01}}}}};
  int64_t sweep_id = 0;
  {
    SweepStore sw(main_db);
    sweep_id = sw.create("lr", spec.dump(), "sweep-uuid-r", "submitted").id;
  }
  // Trial 0: failed, then completed on a re-queue (two attempts); trial 1
  // diverged; trial 2 not run yet.
  auto add_run = [&](const std::string& db, int64_t sid, int64_t trial, RunStatus st, double val) {
    ExperimentStore s(db);
    RunRecord r;
    r.name = "t" + std::to_string(trial);
    r.sweep_id = sid;
    r.sweep_trial = trial;
    const int64_t id = s.create_run(r);
    s.finish_run(id, st, {{"best_val_loss", val}}, "");
    return id;
  };
  const int64_t failed = add_run(main_db, sweep_id, 0, RunStatus::kFailed, 9.0);
  const int64_t done = add_run(main_db, sweep_id, 0, RunStatus::kCompleted, 2.5);
  const int64_t diverged = add_run(main_db, sweep_id, 1, RunStatus::kDiverged, 1.0);
  {
    ExperimentStore s = ExperimentStore::open_readonly(main_db);
    SweepStore sw(main_db);
    const SweepReport r = sweep_report(s, sw, sweep_id);
    EXPECT_EQ(r.trials, 3);
    ASSERT_EQ(r.rows.size(), 3u);
    EXPECT_EQ(r.rows[0].run_id, done);
    EXPECT_EQ(r.rows[0].attempts, (std::vector<int64_t>{failed, done}));
    EXPECT_EQ(r.rows[0].status, "completed");
    EXPECT_EQ(r.rows[0].val_loss, 2.5);
    EXPECT_EQ(r.rows[0].params, (json{{"train.learning_rate", 0.001}}));
    EXPECT_EQ(r.rows[1].run_id, diverged);
    EXPECT_EQ(r.rows[2].status, "not run");
    EXPECT_EQ(r.with_result, 2);
    EXPECT_EQ(r.not_run, 1);
    EXPECT_FALSE(r.complete());
    // A diverged run is a result, not a best trial: its loss of 1.0 is not the best.
    EXPECT_EQ(r.best_trial, 0);
  }
  EXPECT_TRUE(complete_finished_sweeps(main_db).empty());

  // The last trial's task publishes; the import completes the sweep.
  const std::string task_db = dir / "node/experiments.db";
  fs::create_directories(dir / "node");
  int64_t task_sweep = 0;
  {
    SweepStore sw(task_db);
    task_sweep = sw.create("lr", spec.dump(), "sweep-uuid-r", "running").id;
  }
  add_run(task_db, task_sweep, 2, RunStatus::kCompleted, 2.0);
  const ImportReport rep = import_runs(main_db, {task_db});
  EXPECT_EQ(rep.imported, 1);
  EXPECT_EQ(rep.sweeps_completed, std::vector<int64_t>{sweep_id});
  SweepStore sw(main_db);
  EXPECT_EQ(sw.get(sweep_id)->status, "completed");
  ExperimentStore s = ExperimentStore::open_readonly(main_db);
  const SweepReport r = sweep_report(s, sw, sweep_id);
  EXPECT_TRUE(r.complete());
  EXPECT_EQ(r.best_trial, 2);
  EXPECT_EQ(to_json(r)["rows"][2]["val_loss"], 2.0);
}

}  // namespace
}  // namespace bl
