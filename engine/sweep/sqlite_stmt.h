// A prepared SQLite statement for the sweep code's own connections (the
// sweep queue and `runs import` work on tables and attached databases the
// ExperimentStore API does not cover). Errors throw StoreError naming `what`.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>

#include "store/experiment_store.h"

namespace bl::sweep_sql {

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql, std::string what) : db_(db), what_(std::move(what)) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr) != SQLITE_OK) fail("prepare");
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, double v) { return check(sqlite3_bind_double(s_, i, v)); }
  Stmt& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Stmt& bind(int i, std::optional<int64_t> v) {
    return v ? bind(i, *v) : check(sqlite3_bind_null(s_, i));
  }
  /// True while there is a row.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("step");
  }
  /// Steps to the end, then resets (bindings kept) so the statement can run again.
  void run() {
    while (step()) {
    }
    sqlite3_reset(s_);
  }
  bool null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  std::optional<int64_t> opt_i64(int c) const {
    return null(c) ? std::nullopt : std::optional<int64_t>(i64(c));
  }
  std::string text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, size_t(sqlite3_column_bytes(s_, c))) : std::string();
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) fail("bind");
    return *this;
  }
  [[noreturn]] void fail(const char* op) {
    throw StoreError(what_ + " (" + op + "): " + sqlite3_errmsg(db_),
                     sqlite3_extended_errcode(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  std::string what_;
};

/// Runs SQL text (one or more statements); throws StoreError naming `what`.
inline void exec(sqlite3* db, const std::string& sql, const std::string& what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = what + ": " + (err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    throw StoreError(msg, sqlite3_extended_errcode(db));
  }
}

/// A read-write connection to an existing, migrated experiment database
/// (open an ExperimentStore on it first): WAL, foreign keys, `busy_ms` wait.
inline sqlite3* open_connection(const std::string& path, int busy_ms) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                      nullptr) != SQLITE_OK) {
    const std::string msg = path + ": cannot open: " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    throw StoreError(msg);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_ms);
  try {
    exec(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", path);
  } catch (...) {
    sqlite3_close_v2(db);
    throw;
  }
  return db;
}

/// Rolls back an open transaction unless commit() was called.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& what) : db_(db), what_(what) {
    exec(db, "BEGIN IMMEDIATE", what);
  }
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec(db_, "COMMIT", what_);
    open_ = false;
  }

 private:
  sqlite3* db_;
  std::string what_;
  bool open_ = true;
};

}  // namespace bl::sweep_sql
