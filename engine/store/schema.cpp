#include "store/schema.h"

#include <sqlite3.h>

#include "store/experiment_store.h"

namespace bl::store {
namespace {

int64_t pragma_int(sqlite3* db, const char* sql, const std::string& path) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
    throw StoreError(path + ": " + sql + ": " + sqlite3_errmsg(db));
  int rc = sqlite3_step(s);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_finalize(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    throw StoreError(path + ": " + sql + ": " + sqlite3_errmsg(db));
  return v;
}

// Version 0 -> 1: the initial schema (documented in schema.h).
void migrate_v1(sqlite3* db) {
  exec_sql(db, R"sql(
CREATE TABLE runs (
  id              INTEGER PRIMARY KEY,
  name            TEXT NOT NULL DEFAULT '',
  status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'stopped',
                                                  'diverged', 'failed', 'interrupted')),
  status_message  TEXT NOT NULL DEFAULT '',
  created_at      REAL NOT NULL,
  started_at      REAL,
  finished_at     REAL,
  model_config    TEXT NOT NULL DEFAULT '{}',
  train_config    TEXT NOT NULL DEFAULT '{}',
  preset          TEXT NOT NULL DEFAULT '',
  dataset_path    TEXT NOT NULL DEFAULT '',
  dataset_size    INTEGER,
  dataset_sha256  TEXT NOT NULL DEFAULT '',
  tokenizer       TEXT NOT NULL DEFAULT '{}',
  param_count     INTEGER,
  notes           TEXT NOT NULL DEFAULT '',
  program_version TEXT NOT NULL DEFAULT '',
  host            TEXT NOT NULL DEFAULT '',
  pid             INTEGER,
  parent_run_id   INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  summary         TEXT
);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_parent ON runs(parent_run_id);

CREATE TABLE run_tags (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  tag    TEXT NOT NULL,
  PRIMARY KEY (run_id, tag)
) WITHOUT ROWID;
CREATE INDEX run_tags_tag ON run_tags(tag);

CREATE TABLE metric_names (
  id   INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

CREATE TABLE metrics (
  run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name_id   INTEGER NOT NULL REFERENCES metric_names(id),
  step      INTEGER NOT NULL,
  wall_time REAL NOT NULL,
  value     REAL
);
CREATE INDEX metrics_run_name_step ON metrics(run_id, name_id, step);

CREATE TABLE evals (
  id     INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step   INTEGER NOT NULL,
  name   TEXT NOT NULL,
  value  REAL
);
CREATE INDEX evals_run_name_step ON evals(run_id, name, step);

CREATE TABLE samples (
  id          INTEGER PRIMARY KEY,
  run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step        INTEGER NOT NULL,
  prompt      TEXT NOT NULL,
  text        TEXT NOT NULL,
  temperature REAL NOT NULL,
  created_at  REAL NOT NULL
);
CREATE INDEX samples_run_step ON samples(run_id, step);

CREATE TABLE checkpoints (
  id         INTEGER PRIMARY KEY,
  run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step       INTEGER NOT NULL,
  path       TEXT NOT NULL,
  sha256     TEXT NOT NULL DEFAULT '',
  created_at REAL NOT NULL
);
CREATE INDEX checkpoints_run_step ON checkpoints(run_id, step);
)sql",
           "schema v1");
}

// Version 1 -> 2: runs.machine, what the run ran on (JSON: cpu, kernel_isa,
// blas, threads), so runs from different machines or kernel paths compare
// honestly.
void migrate_v2(sqlite3* db) {
  exec_sql(db, "ALTER TABLE runs ADD COLUMN machine TEXT NOT NULL DEFAULT '{}'", "schema v2");
}

// Version 2 -> 3: sweeps, and a UUID on every run.
//   runs.uuid      text UUID (v4), unique: the identity of a run across
//                  databases, so `runs import` merges a run written on another
//                  machine once, however often its database is imported. Old
//                  runs get a random one here.
//   runs.sweep_id  the sweep a run belongs to (NULL: a hand-started run), and
//   runs.sweep_trial its trial index in the sweep's expansion.
//   sweeps         one row per sweep: uuid (the same sweep in every task
//                  database of a Slurm array), name, spec (the resolved JSON),
//                  created_at, status.
//   sweep_trials   the local sweep's work queue: a worker claims a pending
//                  trial in a write transaction (so two workers never run the
//                  same one) and records its run; a trial whose worker died is
//                  put back to pending when the sweep is resumed.
void migrate_v3(sqlite3* db) {
  exec_sql(db, R"sql(
CREATE TABLE sweeps (
  id         INTEGER PRIMARY KEY,
  uuid       TEXT NOT NULL UNIQUE,
  name       TEXT NOT NULL DEFAULT '',
  spec       TEXT NOT NULL DEFAULT '{}',
  created_at REAL NOT NULL,
  status     TEXT NOT NULL DEFAULT 'running'
             CHECK (status IN ('running', 'completed', 'submitted'))
);
CREATE TABLE sweep_trials (
  sweep_id   INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  trial      INTEGER NOT NULL,
  status     TEXT NOT NULL DEFAULT 'pending'
             CHECK (status IN ('pending', 'running', 'done', 'failed')),
  run_id     INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  host       TEXT NOT NULL DEFAULT '',
  pid        INTEGER,
  claimed_at REAL,
  PRIMARY KEY (sweep_id, trial)
);
ALTER TABLE runs ADD COLUMN uuid TEXT;
UPDATE runs SET uuid = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
                             substr(hex(randomblob(2)), 2) || '-' ||
                             substr('89ab', 1 + (abs(random()) % 4), 1) ||
                             substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));
CREATE UNIQUE INDEX runs_uuid ON runs(uuid);
ALTER TABLE runs ADD COLUMN sweep_id INTEGER REFERENCES sweeps(id) ON DELETE SET NULL;
ALTER TABLE runs ADD COLUMN sweep_trial INTEGER;
CREATE INDEX runs_sweep ON runs(sweep_id, sweep_trial);
)sql",
           "schema v3");
}

}  // namespace

const std::vector<Migration>& migrations() {
  // Append new steps here; never edit or reorder released ones. A step that
  // must rebuild a table (SQLite's ALTER TABLE is limited) should follow
  // https://sqlite.org/lang_altertable.html#otheralter with PRAGMA defer_foreign_keys=ON.
  static const std::vector<Migration> steps = {migrate_v1, migrate_v2, migrate_v3};
  return steps;
}

int current_schema_version() {
  return static_cast<int>(migrations().size());
}

void exec_sql(sqlite3* db, const char* sql, const std::string& context) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = context + ": " + (err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    throw StoreError(msg, sqlite3_extended_errcode(db));
  }
}

void migrate(sqlite3* db, const std::string& path, const std::vector<Migration>& steps) {
  const int64_t target = static_cast<int64_t>(steps.size());
  // Already current (the usual case): no write lock needed, so opening does
  // not wait for another process's long write transaction.
  if (pragma_int(db, "PRAGMA application_id", path) == kApplicationId &&
      pragma_int(db, "PRAGMA user_version", path) == target)
    return;
  // IMMEDIATE takes the write lock before reading the version, so two
  // processes creating the same database cannot both run step 0.
  exec_sql(db, "BEGIN IMMEDIATE", path + ": cannot start the schema migration");
  try {
    const int64_t app_id = pragma_int(db, "PRAGMA application_id", path);
    const int64_t version = pragma_int(db, "PRAGMA user_version", path);
    if (app_id != kApplicationId && app_id != 0)
      throw StoreError(path + ": not a Blocklab experiment database (application_id " +
                       std::to_string(app_id) + ")");
    // user_version is any signed 32-bit value in a damaged or hostile file; a
    // negative one indexed `steps` out of bounds (found by fuzz/store_fuzz.cpp).
    if (version < 0)
      throw StoreError(path + ": schema version " + std::to_string(version) +
                       " is invalid (a damaged database?)");
    if (version > target)
      throw StoreError(path + ": schema version " + std::to_string(version) +
                       " is newer than this Blocklab build supports (" + std::to_string(target) +
                       "); upgrade Blocklab to open it");
    for (int64_t v = version; v < target; ++v) {
      try {
        steps[v](db);
      } catch (const StoreError& e) {
        throw StoreError(path + ": migration to schema version " + std::to_string(v + 1) +
                         " failed: " + e.what());
      }
    }
    if (version < target || app_id != kApplicationId) {
      const std::string stamp = "PRAGMA application_id = " + std::to_string(kApplicationId) +
                                "; PRAGMA user_version = " + std::to_string(target) + ";";
      exec_sql(db, stamp.c_str(), path + ": cannot stamp the schema version");
    }
    exec_sql(db, "COMMIT", path + ": cannot commit the schema migration");
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

}  // namespace bl::store
