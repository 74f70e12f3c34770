// Schema of the experiment database and the migrations that build it.
//
// A database is identified as Blocklab's by PRAGMA application_id = kApplicationId
// and versioned by PRAGMA user_version. Version 0 is an empty file; migrations()[v]
// upgrades version v to v + 1. To change the schema, append one function to the
// list in schema.cpp (never edit a released step) and bump nothing else: the
// store, the tests and the "newer schema" check all derive from the list size.
//
// Version 1:
//   runs          one row per training run
//     id INTEGER PRIMARY KEY, name, status TEXT CHECK(status IN (running, completed,
//     stopped, diverged, failed, interrupted)), status_message, created_at /
//     started_at / finished_at REAL (unix seconds), model_config / train_config /
//     tokenizer / summary TEXT (JSON), preset, dataset_path, dataset_size INTEGER,
//     dataset_sha256, param_count INTEGER, notes, program_version, host,
//     pid INTEGER, parent_run_id INTEGER NULL REFERENCES runs ON DELETE SET NULL
//   run_tags      (run_id, tag) PRIMARY KEY, WITHOUT ROWID, index on tag.
//                 A table instead of a JSON array column: "runs tagged X" is an
//                 index lookup instead of a json_each scan of every run, a tag
//                 cannot be stored twice, and tags cascade with their run.
//   metric_names  (id INTEGER PRIMARY KEY, name UNIQUE): metric rows store a small
//                 integer instead of repeating "train/loss" millions of times.
//   metrics       (run_id, name_id, step, wall_time REAL, value REAL NULL)
//                 index (run_id, name_id, step). value NULL means NaN (SQLite
//                 cannot store NaN; a diverged loss must survive).
//   evals         (id, run_id, step, name, value) index (run_id, name, step)
//   samples       (id, run_id, step, prompt, text, temperature, created_at)
//   checkpoints   (id, run_id, step, path, sha256, created_at)
// Version 2: runs.machine (JSON: cpu, kernel_isa, blas, threads).
// Version 3: runs.uuid (unique), runs.sweep_id / sweep_trial, tables sweeps
//   and sweep_trials (documented at migrate_v3 in schema.cpp).
// Every child table references runs(id) ON DELETE CASCADE, so deleting a run
// deletes everything logged for it (needs PRAGMA foreign_keys=ON, which the
// store sets on every connection).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct sqlite3;

namespace bl::store {

/// PRAGMA application_id of a Blocklab experiment database ("BlLb").
constexpr int32_t kApplicationId = 0x426C4C62;

/// One schema upgrade step; runs inside the migration transaction and throws
/// StoreError on failure.
using Migration = void (*)(sqlite3* db);

/// migrations()[v] upgrades a database from version v to v + 1.
const std::vector<Migration>& migrations();
/// The version a fully migrated database has (= migrations().size()).
int current_schema_version();

/// Applies steps[user_version..] in one BEGIN IMMEDIATE transaction and stamps
/// application_id and user_version. A database newer than steps.size() is
/// left untouched and reported. Errors name `path`.
void migrate(sqlite3* db, const std::string& path, const std::vector<Migration>& steps);

/// Runs one or more SQL statements; throws StoreError("<context>: <sqlite message>").
void exec_sql(sqlite3* db, const char* sql, const std::string& context);

}  // namespace bl::store
