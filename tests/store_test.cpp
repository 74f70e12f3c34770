// Experiment store: schema/migrations, buffered metric writes, readers next
// to writers, crash recovery after SIGKILL, and hostile/unusable files.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "expect_error.h"
#include "store/experiment_store.h"
#include "store/schema.h"
#include "temp_files.h"

namespace bl {
namespace {

template <class F>
std::string error_of(F&& f) {
  return test::error_of<StoreError>(std::forward<F>(f));
}

namespace fs = std::filesystem;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;
using Clock = std::chrono::steady_clock;

// A raw sqlite3 connection for checks behind the store's back.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << (err ? err : "");
  }
  // First column of the first row, as text ("" if none).
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
    std::string out;
    if (s && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  int64_t integer(const std::string& sql) {
    const std::string t = text(sql);
    return t.empty() ? 0 : std::stoll(t);
  }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

RunRecord sample_run() {
  RunRecord r;
  r.name = "tiny-gpt";
  r.model_config = {{"d_model", 64}, {"n_layers", 2}};
  r.train_config = {{"learning_rate", 3e-4}, {"max_steps", 100}};
  r.preset = "gpt-tiny";
  r.dataset_path = "/data/shakespeare.txt";
  r.dataset_size = 1115394;
  r.dataset_sha256 = std::string(64, 'a');
  r.tokenizer = {{"type", "char"}, {"vocab_size", 65}};
  r.param_count = 123456;
  r.tags = {"baseline", "ablation", "baseline"};
  r.notes = "first try";
  return r;
}

// --- runs --------------------------------------------------------------------

TEST(Store, CreateAndReadRun) {
  TempDir dir;
  ExperimentStore s(dir / "sub/dir/experiments.db");  // creates parent dirs
  const double before =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const int64_t id = s.create_run(sample_run());
  auto r = s.get_run(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->name, "tiny-gpt");
  EXPECT_EQ(r->status, RunStatus::kRunning);
  EXPECT_EQ(r->model_config, sample_run().model_config);
  EXPECT_EQ(r->train_config, sample_run().train_config);
  EXPECT_EQ(r->tokenizer, sample_run().tokenizer);
  EXPECT_EQ(r->preset, "gpt-tiny");
  EXPECT_EQ(r->dataset_path, "/data/shakespeare.txt");
  EXPECT_EQ(r->dataset_size, 1115394);
  EXPECT_EQ(r->dataset_sha256, std::string(64, 'a'));
  EXPECT_EQ(r->param_count, 123456);
  EXPECT_EQ(r->tags, (std::vector<std::string>{"ablation", "baseline"}));
  EXPECT_EQ(r->notes, "first try");
  EXPECT_EQ(r->pid, getpid());
  EXPECT_FALSE(r->host.empty());
  EXPECT_EQ(r->program_version, BLOCKLAB_VERSION);
  EXPECT_NEAR(r->created_at, before, 5.0);
  ASSERT_TRUE(r->started_at);
  EXPECT_FALSE(r->finished_at);
  EXPECT_TRUE(r->summary.is_null());
  EXPECT_FALSE(r->parent_run_id);
  EXPECT_FALSE(s.get_run(id + 100));
  EXPECT_EQ(s.schema_version(), store::current_schema_version());
}

TEST(Store, ListRunsFiltersAndStatus) {
  TempDir dir;
  ExperimentStore s(dir / "e.db");
  RunRecord a = sample_run();
  a.tags = {"x"};
  const int64_t r1 = s.create_run(a);
  a.tags = {"y"};
  a.parent_run_id = r1;
  const int64_t r2 = s.create_run(a);
  a.tags = {"x", "y"};
  a.parent_run_id.reset();
  const int64_t r3 = s.create_run(a);
  EXPECT_EQ(s.get_run(r2)->parent_run_id, r1);

  s.set_status(r1, RunStatus::kFailed, "out of memory");
  s.finish_run(r2, RunStatus::kCompleted, {{"final_loss", 1.5}, {"nan", NAN}});
  EXPECT_THROW(s.finish_run(r3, RunStatus::kRunning, nullptr), std::invalid_argument);

  auto ids = [](const std::vector<RunRecord>& runs) {
    std::vector<int64_t> v;
    for (auto& r : runs) v.push_back(r.id);
    return v;
  };
  EXPECT_EQ(ids(s.list_runs()), (std::vector<int64_t>{r3, r2, r1}));
  EXPECT_EQ(ids(s.list_runs({.newest_first = false})), (std::vector<int64_t>{r1, r2, r3}));
  EXPECT_EQ(ids(s.list_runs({.tag = "x"})), (std::vector<int64_t>{r3, r1}));
  EXPECT_EQ(ids(s.list_runs({.status = RunStatus::kRunning})), std::vector<int64_t>{r3});
  EXPECT_EQ(ids(s.list_runs({.status = RunStatus::kRunning, .tag = "x"})),
            std::vector<int64_t>{r3});
  EXPECT_EQ(ids(s.list_runs({.limit = 2})), (std::vector<int64_t>{r3, r2}));

  auto failed = s.get_run(r1);
  EXPECT_EQ(failed->status, RunStatus::kFailed);
  EXPECT_EQ(failed->status_message, "out of memory");
  auto done = s.get_run(r2);
  EXPECT_EQ(done->status, RunStatus::kCompleted);
  ASSERT_TRUE(done->finished_at);
  EXPECT_GE(*done->finished_at, *done->started_at);
  EXPECT_EQ(done->summary["final_loss"], 1.5);
  EXPECT_TRUE(done->summary["nan"].is_null());  // JSON has no NaN

  s.set_tags(r1, {"b", "a", "a"});
  s.set_notes(r1, "notes\nwith 'quotes' and ünïcode");
  s.set_name(r1, "renamed");
  auto r = s.get_run(r1);
  EXPECT_EQ(r->tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r->notes, "notes\nwith 'quotes' and ünïcode");
  EXPECT_EQ(r->name, "renamed");
  EXPECT_HAS(error_of([&] { s.set_status(999, RunStatus::kFailed); }), "no run with id 999");

  for (RunStatus st : {RunStatus::kRunning, RunStatus::kCompleted, RunStatus::kStopped,
                       RunStatus::kDiverged, RunStatus::kFailed, RunStatus::kInterrupted})
    EXPECT_EQ(parse_run_status(run_status_name(st)), st);
  EXPECT_FALSE(parse_run_status("bogus"));
}

// --- metrics -----------------------------------------------------------------

TEST(Store, MetricsRoundTripIncludingNaN) {
  TempDir dir;
  ExperimentStore s(dir / "e.db");
  const int64_t id = s.create_run(sample_run());
  const char* names[] = {"train/loss", "lr", "grad_norm", "tokens_per_sec", "step_ms"};
  for (int step = 0; step < 100; ++step)
    for (int k = 0; k < 5; ++k) s.log_metric(id, step, step * 0.1, names[k], step * 10.0 + k);
  s.log_metric(id, 100, 10.0, "train/loss", NAN);
  s.log_metric(id, 101, 10.1, "train/loss", INFINITY);
  EXPECT_GT(s.pending_rows(), 0u);
  s.flush();
  EXPECT_EQ(s.pending_rows(), 0u);

  MetricSeries loss = s.metrics(id, "train/loss");
  ASSERT_EQ(loss.size(), 102u);
  for (int step = 0; step < 100; ++step) {
    EXPECT_EQ(loss.steps[step], step);
    EXPECT_DOUBLE_EQ(loss.wall_times[step], step * 0.1);
    EXPECT_EQ(loss.values[step], step * 10.0);
  }
  EXPECT_TRUE(std::isnan(loss.values[100]));
  EXPECT_EQ(loss.values[101], INFINITY);
  MetricSeries tail = s.metrics(id, "lr", 97);
  EXPECT_EQ(tail.steps, (std::vector<int64_t>{98, 99}));
  EXPECT_EQ(s.metrics(id, "nope").size(), 0u);
  EXPECT_EQ(s.metric_names(id), (std::vector<std::string>{"grad_norm", "lr", "step_ms",
                                                          "tokens_per_sec", "train/loss"}));
  EXPECT_EQ(s.latest_step(id), 101);

  const int64_t empty = s.create_run(sample_run());
  EXPECT_FALSE(s.latest_step(empty));
  EXPECT_TRUE(s.metric_names(empty).empty());
  EXPECT_HAS(error_of([&] { s.log_metric(12345, 0, 0, "x", 1); }), "no run with id 12345");
}

TEST(Store, AutoFlushByRowCount) {
  TempDir dir;
  ExperimentStore s(dir / "e.db", {.flush_rows = 8, .flush_interval_s = 1e9});
  const int64_t id = s.create_run(sample_run());
  ExperimentStore reader = ExperimentStore::open_readonly(dir / "e.db");
  for (int i = 0; i < 7; ++i) s.log_metric(id, i, i, "loss", i);
  EXPECT_EQ(reader.metrics(id, "loss").size(), 0u);
  s.log_metric(id, 7, 7, "loss", 7);
  EXPECT_EQ(s.pending_rows(), 0u);
  EXPECT_EQ(reader.metrics(id, "loss").size(), 8u);
}

TEST(Store, AutoFlushByTime) {
  TempDir dir;
  ExperimentStore s(dir / "e.db", {.flush_rows = 1000, .flush_interval_s = 0.05});
  const int64_t id = s.create_run(sample_run());
  ExperimentStore reader = ExperimentStore::open_readonly(dir / "e.db");
  s.log_metric(id, 0, 0, "loss", 1);
  EXPECT_EQ(reader.metrics(id, "loss").size(), 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(70));
  s.log_metric(id, 1, 0, "loss", 2);
  EXPECT_EQ(reader.metrics(id, "loss").size(), 2u);
}

TEST(Store, OtherWritesAndCloseFlushPendingMetrics) {
  TempDir dir;
  const std::string db = dir / "e.db";
  int64_t id = 0;
  {
    ExperimentStore s(db, {.flush_rows = 1000, .flush_interval_s = 1e9});
    id = s.create_run(sample_run());
    s.log_metric(id, 0, 0, "loss", 1);
    s.log_eval(id, 0, "val_loss", 2.5);  // commits the pending metric with it
    EXPECT_EQ(s.pending_rows(), 0u);
    s.log_metric(id, 1, 0, "loss", 1);
    s.log_metric(id, 2, 0, "loss", 1);
  }  // destructor flushes
  {
    ExperimentStore s(db, {.flush_rows = 1000, .flush_interval_s = 1e9});
    EXPECT_EQ(s.metrics(id, "loss").size(), 3u);
    s.log_metric(id, 3, 0, "loss", 1);
    s.close();
    EXPECT_THROW(s.log_metric(id, 4, 0, "loss", 1), StoreError);
  }
  ExperimentStore r = ExperimentStore::open_readonly(db);
  EXPECT_EQ(r.metrics(id, "loss").size(), 4u);
  EXPECT_EQ(r.get_run(id)->status, RunStatus::kRunning);  // our own pid: still alive
  EXPECT_HAS(error_of([&] { r.log_metric(id, 5, 0, "loss", 1); }), "read-only");
  EXPECT_HAS(error_of([&] { r.create_run(sample_run()); }), "read-only");
}

TEST(Store, EvalsSamplesCheckpoints) {
  TempDir dir;
  ExperimentStore s(dir / "e.db");
  const int64_t id = s.create_run(sample_run());
  s.log_eval(id, 100, "val_loss", 2.0);
  s.log_eval(id, 100, "val_ppl", 7.4);
  s.log_eval(id, 200, "val_loss", 1.8);
  s.log_eval(id, 300, "val_loss", NAN);
  auto all = s.evals(id);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].name, "val_loss");
  EXPECT_EQ(all[1].name, "val_ppl");
  auto vl = s.evals(id, "val_loss");
  ASSERT_EQ(vl.size(), 3u);
  EXPECT_EQ(vl[1].step, 200);
  EXPECT_EQ(vl[1].value, 1.8);
  EXPECT_TRUE(std::isnan(vl[2].value));

  const int64_t sid = s.log_sample(id, 100, "ROMEO:", "O, she doth teach \"the\" torches\n", 0.8);
  auto samples = s.samples(id);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].id, sid);
  EXPECT_EQ(samples[0].prompt, "ROMEO:");
  EXPECT_EQ(samples[0].text, "O, she doth teach \"the\" torches\n");
  EXPECT_EQ(samples[0].temperature, 0.8);

  s.add_checkpoint(id, 500, "/runs/1/step500.safetensors", std::string(64, 'f'));
  auto ck = s.checkpoints(id);
  ASSERT_EQ(ck.size(), 1u);
  EXPECT_EQ(ck[0].step, 500);
  EXPECT_EQ(ck[0].path, "/runs/1/step500.safetensors");
  EXPECT_EQ(ck[0].sha256, std::string(64, 'f'));
  EXPECT_GT(ck[0].created_at, 0);
}

TEST(Store, DeleteRunCascades) {
  TempDir dir;
  const std::string db = dir / "e.db";
  ExperimentStore s(db, {.flush_rows = 1000, .flush_interval_s = 1e9});
  const int64_t parent = s.create_run(sample_run());
  RunRecord c = sample_run();
  c.parent_run_id = parent;
  const int64_t child = s.create_run(c);
  for (int64_t id : {parent, child}) {
    for (int i = 0; i < 10; ++i) s.log_metric(id, i, i, "loss", i);
    s.log_eval(id, 1, "val", 1);
    s.log_sample(id, 1, "p", "t", 1);
    s.add_checkpoint(id, 1, "ck", "");
  }
  s.log_metric(parent, 11, 11, "loss", 1);  // still buffered when the run is deleted
  EXPECT_TRUE(s.delete_run(parent));
  EXPECT_FALSE(s.delete_run(parent));
  s.flush();
  EXPECT_FALSE(s.get_run(parent));
  EXPECT_FALSE(s.get_run(child)->parent_run_id);
  RawDb raw(db);
  for (const char* t : {"metrics", "evals", "samples", "checkpoints", "run_tags"})
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM ") + t +
                          " WHERE run_id = " + std::to_string(parent)),
              0)
        << t;
  EXPECT_EQ(raw.integer("SELECT count(*) FROM metrics WHERE run_id = " + std::to_string(child)),
            10);
}

TEST(Store, RunDeletedByAnotherConnectionDropsOnlyItsRows) {
  TempDir dir;
  const std::string db = dir / "e.db";
  ExperimentStore trainer(db, {.flush_rows = 1000, .flush_interval_s = 1e9});
  const int64_t a = trainer.create_run(sample_run());
  const int64_t b = trainer.create_run(sample_run());
  trainer.log_metric(a, 0, 0, "loss", 1);
  trainer.log_metric(b, 0, 0, "loss", 1);
  {
    ExperimentStore ui(db);
    ui.delete_run(a);
  }
  trainer.flush();  // a's row has nowhere to go; b's must not be lost with it
  EXPECT_EQ(trainer.metrics(b, "loss").size(), 1u);
}

// --- concurrency ---------------------------------------------------------------

TEST(Store, ReaderNeverWaitsForAWriter) {
  TempDir dir;
  const std::string db = dir / "e.db";
  ExperimentStore s(db);
  const int64_t id = s.create_run(sample_run());
  s.log_metric(id, 0, 0, "loss", 1);
  s.flush();
  ExperimentStore reader = ExperimentStore::open_readonly(db);
  RawDb other(db);
  other.exec("BEGIN IMMEDIATE");  // another writer holds the write lock...
  other.exec("INSERT INTO runs(name, status, created_at) VALUES ('uncommitted', 'running', 0)");
  const auto t0 = Clock::now();
  EXPECT_EQ(reader.list_runs().size(), 1u);  // ...and the reader neither waits nor sees it
  EXPECT_EQ(reader.metrics(id, "loss").size(), 1u);
  EXPECT_EQ(reader.latest_step(id), 0);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.5);

  // A writer waits (busy_timeout) for the lock instead of failing.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    other.exec("COMMIT");
  });
  s.log_metric(id, 1, 0, "loss", 1);
  s.flush();
  release.join();
  EXPECT_EQ(reader.list_runs().size(), 2u);
  EXPECT_EQ(reader.metrics(id, "loss").size(), 2u);
}

TEST(Store, TwoWriterThreadsAndAReader) {
  TempDir dir;
  const std::string db = dir / "e.db";
  { ExperimentStore init(db); }
  constexpr int kSteps = 600;
  std::atomic<bool> done{false};
  std::vector<int64_t> ids(2);
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w)
    writers.emplace_back([&, w] {
      ExperimentStore s(db, {.flush_rows = 64});  // one connection per thread
      ids[w] = s.create_run(sample_run());
      for (int step = 0; step < kSteps; ++step)
        for (const char* n : {"loss", "lr", "gnorm", "tps", "ms"})
          s.log_metric(ids[w], step, step, n, w);
      s.finish_run(ids[w], RunStatus::kCompleted, {{"steps", kSteps}});
    });
  std::thread reader([&] {
    ExperimentStore r = ExperimentStore::open_readonly(db);
    while (!done) {
      for (auto& run : r.list_runs()) r.latest_step(run.id);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (auto& t : writers) t.join();
  done = true;
  reader.join();
  ExperimentStore r = ExperimentStore::open_readonly(db);
  for (int64_t id : ids) {
    EXPECT_EQ(r.get_run(id)->status, RunStatus::kCompleted);
    EXPECT_EQ(r.metric_names(id).size(), 5u);
    for (const char* n : {"loss", "lr", "gnorm", "tps", "ms"})
      EXPECT_EQ(r.metrics(id, n).size(), size_t(kSteps)) << n;
  }
}

// --- schema and migrations ------------------------------------------------------

// Frozen copy of schema version 1 as released. Do not update it when the
// schema changes: it is the "old database" every future migration must accept.
constexpr const char* kSchemaV1 = R"sql(
BEGIN;
CREATE TABLE runs (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'stopped', 'diverged', 'failed', 'interrupted')),
  status_message TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, started_at REAL, finished_at REAL,
  model_config TEXT NOT NULL DEFAULT '{}', train_config TEXT NOT NULL DEFAULT '{}',
  preset TEXT NOT NULL DEFAULT '', dataset_path TEXT NOT NULL DEFAULT '', dataset_size INTEGER,
  dataset_sha256 TEXT NOT NULL DEFAULT '', tokenizer TEXT NOT NULL DEFAULT '{}', param_count INTEGER,
  notes TEXT NOT NULL DEFAULT '', program_version TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '',
  pid INTEGER, parent_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL, summary TEXT);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_parent ON runs(parent_run_id);
CREATE TABLE run_tags (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  tag TEXT NOT NULL, PRIMARY KEY (run_id, tag)) WITHOUT ROWID;
CREATE INDEX run_tags_tag ON run_tags(tag);
CREATE TABLE metric_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name_id INTEGER NOT NULL REFERENCES metric_names(id), step INTEGER NOT NULL,
  wall_time REAL NOT NULL, value REAL);
CREATE INDEX metrics_run_name_step ON metrics(run_id, name_id, step);
CREATE TABLE evals (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL, name TEXT NOT NULL, value REAL);
CREATE INDEX evals_run_name_step ON evals(run_id, name, step);
CREATE TABLE samples (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL, prompt TEXT NOT NULL, text TEXT NOT NULL, temperature REAL NOT NULL,
  created_at REAL NOT NULL);
CREATE INDEX samples_run_step ON samples(run_id, step);
CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL);
CREATE INDEX checkpoints_run_step ON checkpoints(run_id, step);
PRAGMA application_id = 1114393698;
PRAGMA user_version = 1;
INSERT INTO runs(id, name, status, created_at, host, pid) VALUES (7, 'old run', 'completed', 1.7e9, 'h', 1);
INSERT INTO run_tags VALUES (7, 'legacy');
INSERT INTO metric_names VALUES (1, 'loss');
INSERT INTO metrics VALUES (7, 1, 0, 0.5, 4.2), (7, 1, 1, 1.0, 3.9);
COMMIT;
)sql";

// Schema dump for comparing databases built different ways.
std::string schema_of(const std::string& path) {
  RawDb raw(path);
  return raw.text(
      "SELECT group_concat(type || ' ' || name, ', ') FROM "
      "(SELECT type, name FROM sqlite_master ORDER BY type, name)");
}

TEST(Store, MigratesEmptyDatabase) {
  TempDir dir;
  write_bytes(dir / "zero.db", "");  // an empty file is an empty SQLite database
  { ExperimentStore s(dir / "zero.db"); }
  { ExperimentStore s(dir / "new.db"); }
  for (const char* f : {"zero.db", "new.db"}) {
    RawDb raw(dir / f);
    EXPECT_EQ(raw.integer("PRAGMA user_version"), store::current_schema_version());
    EXPECT_EQ(raw.integer("PRAGMA application_id"), store::kApplicationId);
    EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
  }
  EXPECT_EQ(schema_of(dir / "zero.db"), schema_of(dir / "new.db"));
}

TEST(Store, OpensHandBuiltV1DatabaseAndMigratesToAFutureV2) {
  TempDir dir;
  const std::string db = dir / "v1.db";
  {
    RawDb raw(db);
    raw.exec(kSchemaV1);
  }
  // The current build reads a v1 database as-is (or after migrating it).
  {
    ExperimentStore s(db);
    auto r = s.get_run(7);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->name, "old run");
    EXPECT_EQ(r->tags, std::vector<std::string>{"legacy"});
    EXPECT_EQ(s.metrics(7, "loss").values, (std::vector<double>{4.2, 3.9}));
    s.log_metric(7, 2, 1.5, "loss", 3.5);
  }
  // A fresh database must have exactly the frozen v1 layout while v1 is current.
  if (store::current_schema_version() == 1) {
    ExperimentStore fresh(dir / "fresh.db");
    fresh.close();
    EXPECT_EQ(schema_of(dir / "fresh.db"), schema_of(db));
  }

  // A v2 migration is one function appended to the list.
  std::vector<store::Migration> steps = store::migrations();
  steps.push_back([](sqlite3* d) {
    store::exec_sql(d, "ALTER TABLE runs ADD COLUMN gpu TEXT NOT NULL DEFAULT ''", "v2");
  });
  const int future = int(steps.size());
  {
    RawDb raw(db);
    store::migrate(raw.get(), db, steps);
    EXPECT_EQ(raw.integer("PRAGMA user_version"), future);
    EXPECT_EQ(raw.integer("SELECT count(*) FROM metrics WHERE run_id = 7"), 3);
    EXPECT_EQ(raw.text("SELECT gpu IS NOT NULL FROM runs WHERE id = 7"), "1");
    store::migrate(raw.get(), db, steps);  // idempotent
    EXPECT_EQ(raw.integer("PRAGMA user_version"), future);
  }
  // This build refuses the newer database and leaves it untouched.
  const std::string before = read_bytes(db);
  std::string msg = error_of([&] { ExperimentStore s(db); });
  EXPECT_HAS(msg, db);
  EXPECT_HAS(msg, "newer");
  msg = error_of([&] { ExperimentStore::open_readonly(db); });
  EXPECT_HAS(msg, "newer");
  EXPECT_EQ(read_bytes(db), before);

  // A failing step rolls the whole migration back.
  const std::string db2 = dir / "v1b.db";
  {
    RawDb raw(db2);
    raw.exec(kSchemaV1);
  }
  std::vector<store::Migration> bad = store::migrations();
  bad.push_back([](sqlite3* d) {
    store::exec_sql(d, "ALTER TABLE runs ADD COLUMN a INTEGER", "v2");
    store::exec_sql(d, "THIS IS NOT SQL", "v2");
  });
  RawDb raw(db2);
  EXPECT_HAS(error_of([&] { store::migrate(raw.get(), db2, bad); }), "migration to schema version");
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 1);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'a'"), 0);
}

// --- bad files and locations -------------------------------------------------------

TEST(Store, RefusesFilesThatAreNotBlocklabDatabases) {
  TempDir dir;
  std::mt19937 rng(3);
  std::string random(8192, '\0');
  for (char& c : random) c = char(rng());
  const std::vector<std::pair<std::string, std::string>> files = {
      {"random.bin", random},
      {"notes.txt", "These are my notes.\nNot a database.\n"},
      {"short.txt", "hello"},
      {"fake-header.db", std::string("SQLite format 3\0", 16) + std::string(200, 'x')},
  };
  for (const auto& [name, bytes] : files) {
    const std::string path = dir / name;
    write_bytes(path, bytes);
    for (bool ro : {false, true}) {
      const std::string msg = error_of([&] {
        if (ro)
          ExperimentStore::open_readonly(path);
        else
          ExperimentStore s(path);
      });
      EXPECT_HAS(msg, path);
      EXPECT_HAS(msg, "not a Blocklab experiment database");
    }
    EXPECT_EQ(read_bytes(path), bytes) << name << " was modified";
  }
  // Some other program's SQLite database.
  const std::string other = dir / "other.sqlite";
  {
    RawDb raw(other);
    raw.exec("CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES ('ada');");
  }
  const std::string before = read_bytes(other);
  EXPECT_HAS(error_of([&] { ExperimentStore s(other); }), "not a Blocklab experiment database");
  EXPECT_EQ(read_bytes(other), before);
  // A directory.
  EXPECT_HAS(error_of([&] { ExperimentStore s(dir.path()); }), "is a directory");
}

TEST(Store, UnusableLocationsGiveClearErrors) {
  TempDir dir;
  write_bytes(dir / "file", "x");
  // The parent "directory" is a regular file.
  std::string path = dir / "file/sub/experiments.db";
  std::string msg = error_of([&] { ExperimentStore s(path); });
  EXPECT_HAS(msg, path);
  EXPECT_HAS(msg, "cannot create directory");
  // A read-only file system.
  path = "/proc/blocklab-test/experiments.db";
  msg = error_of([&] { ExperimentStore s(path); });
  EXPECT_HAS(msg, path);
  // Read-only open of a missing file.
  msg = error_of([&] { ExperimentStore::open_readonly(dir / "missing.db"); });
  EXPECT_HAS(msg, "missing.db");
  EXPECT_FALSE(fs::exists(dir / "missing.db"));
  // Permission bits (meaningless for root, who may write anywhere).
  if (geteuid() != 0) {
    fs::create_directory(dir / "locked");
    fs::permissions(dir / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    path = dir / "locked/experiments.db";
    msg = error_of([&] { ExperimentStore s(path); });
    EXPECT_HAS(msg, path);
    fs::permissions(dir / "locked", fs::perms::owner_all);
  }
}

TEST(Store, FullDiskIsAClearErrorAndLosesNothingCommitted) {
  TempDir dir;
  const std::string path = dir / "full.db";
  int64_t run = 0;
  size_t committed = 0;
  std::string msg;
  {
    StoreOptions opt;
    opt.max_size_bytes = 256 * 1024;  // behaves like a disk with 256 KiB free
    opt.flush_rows = 64;
    ExperimentStore s(path, opt);
    run = s.create_run(RunRecord{});
    msg = error_of([&] {
      for (int64_t step = 0; step < 1'000'000; ++step) {
        s.log_metric(run, step, 0.0, "loss", double(step));
        if (s.pending_rows() == 0) committed = size_t(step + 1);
      }
    });
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, "full");
    EXPECT_GT(committed, 1000u);
    // The failed batch stays buffered (rolled back, not dropped), and every
    // later write says the same.
    EXPECT_GT(s.pending_rows(), 0u);
    EXPECT_HAS(error_of([&] { s.flush(); }), "full");
  }
  // Reopened without the cap: intact, and every row committed before is there.
  ExperimentStore s(path);
  EXPECT_EQ(RawDb(path).text("PRAGMA integrity_check"), "ok");
  EXPECT_GE(s.metrics(run, "loss").size(), committed);
}

TEST(Store, DefaultPath) {
  auto save = [](const char* n) -> std::optional<std::string> {
    const char* v = std::getenv(n);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto restore = [](const char* n, const std::optional<std::string>& v) {
    if (v)
      setenv(n, v->c_str(), 1);
    else
      unsetenv(n);
  };
  const auto db = save("BLOCKLAB_DB"), xdg = save("XDG_DATA_HOME"), home = save("HOME");
  setenv("BLOCKLAB_DB", "/x/my.db", 1);
  setenv("XDG_DATA_HOME", "/xdg", 1);
  setenv("HOME", "/home/u", 1);
  EXPECT_EQ(default_db_path(), "/x/my.db");
  setenv("BLOCKLAB_DB", "", 1);
  EXPECT_EQ(default_db_path(), "/xdg/blocklab/experiments.db");
  unsetenv("BLOCKLAB_DB");
  unsetenv("XDG_DATA_HOME");
  EXPECT_EQ(default_db_path(), "/home/u/.local/share/blocklab/experiments.db");
  unsetenv("HOME");
  EXPECT_THROW(default_db_path(), StoreError);
  restore("BLOCKLAB_DB", db);
  restore("XDG_DATA_HOME", xdg);
  restore("HOME", home);
}

// --- crash safety -------------------------------------------------------------------

const char* const kNames[] = {"loss", "lr", "grad_norm", "tokens_per_sec", "step_ms"};

// Child process body: one run, 5 metrics per step, a flush every 10 steps.
// Before each flush it writes -1 - step to `fd`, after it the committed step,
// so the parent knows whether its SIGKILL landed inside a flush. Never returns.
[[noreturn]] void child_trainer(const std::string& db, int fd) {
  try {
    ExperimentStore s(db, {.flush_rows = 100000, .flush_interval_s = 1e9});
    const int64_t id = s.create_run(sample_run());
    if (write(fd, &id, sizeof(id)) != sizeof(id)) _exit(3);
    const auto t0 = Clock::now();
    for (int64_t step = 0; Clock::now() - t0 < std::chrono::seconds(20); ++step) {
      for (int k = 0; k < 5; ++k) s.log_metric(id, step, step * 0.1, kNames[k], step * 5.0 + k);
      if (step % 10 == 9) {
        const int64_t starting = -1 - step;  // "flush of `step` started"
        if (write(fd, &starting, sizeof(starting)) != sizeof(starting)) _exit(3);
        s.flush();
        if (write(fd, &step, sizeof(step)) != sizeof(step)) _exit(3);
      }
    }
  } catch (...) {
    _exit(2);
  }
  _exit(0);  // parent never let us finish: fail loudly via status
}

TEST(Store, SigkillLosesNothingCommittedAndMarksRunInterrupted) {
  TempDir dir;
  const std::string db = dir / "crash.db";
  { ExperimentStore init(db); }
  std::mt19937 rng(99);
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      child_trainer(db, fds[1]);
    }
    close(fds[1]);
    int64_t run_id = -1, last = -1, value = 0;
    ASSERT_EQ(read(fds[0], &run_id, sizeof(run_id)), ssize_t(sizeof(run_id)));
    // Let it commit 20..39 batches, then kill at a random moment mid-loop.
    const int batches = 20 + int(rng() % 20);
    for (int i = 0; i < batches;) {
      ASSERT_EQ(read(fds[0], &value, sizeof(value)), ssize_t(sizeof(value)));
      if (value >= 0) last = value, ++i;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child exited early with status " << status;
    bool killed_in_flush = false;  // last message was "flush started"
    while (read(fds[0], &value, sizeof(value)) == ssize_t(sizeof(value))) {
      killed_in_flush = value < 0;
      if (value >= 0) last = value;
    }
    close(fds[0]);

    {
      RawDb raw(db);
      EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
    }
    ExperimentStore s(db);  // read-write open runs crash recovery
    auto run = s.get_run(run_id);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, RunStatus::kInterrupted);
    EXPECT_HAS(run->status_message, std::to_string(pid));
    // Every acknowledged flush is there, and batches are all-or-nothing.
    for (int k = 0; k < 5; ++k) {
      MetricSeries m = s.metrics(run_id, kNames[k]);
      ASSERT_GE(int64_t(m.size()), last + 1) << kNames[k];
      EXPECT_EQ(m.size() % 10, 0u) << "partial batch committed";
      for (size_t i = 0; i < m.size(); ++i) {
        ASSERT_EQ(m.steps[i], int64_t(i));
        ASSERT_EQ(m.values[i], double(i) * 5.0 + k);
      }
    }
    EXPECT_GE(s.latest_step(run_id).value_or(-1), last);
    std::printf("[crash] round %d: killed %s; acknowledged through step %lld, committed %lld\n",
                round, killed_in_flush ? "inside a flush" : "between flushes", (long long)last,
                (long long)s.latest_step(run_id).value_or(-1));
  }
  ExperimentStore s(db);
  EXPECT_EQ(s.list_runs({.status = RunStatus::kInterrupted}).size(), 3u);
}

TEST(Store, RecoveryOnlyTouchesDeadProcessesOnThisHost) {
  TempDir dir;
  const std::string db = dir / "e.db";
  // A process that has exited and been reaped, and one that is a zombie.
  const pid_t reaped = fork();
  if (reaped == 0) _exit(0);
  waitpid(reaped, nullptr, 0);
  const pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  int64_t alive_id, other_host_id, reaped_id, zombie_id, done_id;
  {
    ExperimentStore s(db);
    RunRecord r = sample_run();
    alive_id = s.create_run(r);  // our own pid
    r.host = "some-other-machine";
    r.pid = reaped;
    other_host_id = s.create_run(r);
    r.host.clear();
    reaped_id = s.create_run(r);
    r.pid = zombie;
    zombie_id = s.create_run(r);
    r.status = RunStatus::kCompleted;
    r.pid = reaped;
    done_id = s.create_run(r);
  }
  ExperimentStore s(db);
  waitpid(zombie, nullptr, 0);
  EXPECT_EQ(s.get_run(alive_id)->status, RunStatus::kRunning);
  EXPECT_EQ(s.get_run(other_host_id)->status, RunStatus::kRunning);
  EXPECT_EQ(s.get_run(reaped_id)->status, RunStatus::kInterrupted);
  EXPECT_EQ(s.get_run(zombie_id)->status, RunStatus::kInterrupted);
  EXPECT_EQ(s.get_run(done_id)->status, RunStatus::kCompleted);
  // Readers never modify anything.
  ExperimentStore r = ExperimentStore::open_readonly(db);
  EXPECT_EQ(r.get_run(alive_id)->status, RunStatus::kRunning);
}

}  // namespace
}  // namespace bl
