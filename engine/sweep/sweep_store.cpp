#include "sweep/sweep_store.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <fstream>

#include "store/experiment_store.h"
#include "store/process_status.h"
#include "sweep/sqlite_stmt.h"

namespace bl {
using sweep_sql::Stmt;
using sweep_sql::Transaction;

namespace {

SweepRecord read_sweep(const Stmt& q) {
  return {q.i64(0), q.text(1), q.text(2), q.text(3), q.f64(4), q.text(5)};
}

constexpr const char* kSweepColumns =
    "SELECT id, uuid, name, spec, created_at, status FROM sweeps ";

}  // namespace

SweepStore::SweepStore(const std::string& db_path) : path_(db_path) {
  {
    ExperimentStore migrate(db_path);  // creates, checks, migrates, recovers dead runs
  }
  // Workers wait on each other's claim transactions, which are short; a long
  // wait means a stuck writer, which the store reports after a minute.
  db_ = sweep_sql::open_connection(db_path, 60000);
}

SweepStore::~SweepStore() {
  sqlite3_close_v2(db_);
}

SweepRecord SweepStore::create(const std::string& name, const std::string& spec,
                               const std::string& uuid, const std::string& status) {
  Stmt q(db_,
         "INSERT INTO sweeps(uuid, name, spec, created_at, status) VALUES (?1, ?2, ?3, ?4, ?5)",
         path_ + ": cannot record the sweep");
  const std::string u = uuid.empty() ? new_uuid() : uuid;
  q.bind(1, u).bind(2, name).bind(3, spec).bind(4, unix_now()).bind(5, status).run();
  return *get(sqlite3_last_insert_rowid(db_));
}

std::optional<SweepRecord> SweepStore::get(int64_t id) {
  Stmt q(db_, std::string(kSweepColumns) + "WHERE id = ?1", path_);
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  return read_sweep(q);
}

std::optional<SweepRecord> SweepStore::find_by_uuid(const std::string& uuid) {
  Stmt q(db_, std::string(kSweepColumns) + "WHERE uuid = ?1", path_);
  q.bind(1, uuid);
  if (!q.step()) return std::nullopt;
  return read_sweep(q);
}

std::optional<SweepRecord> SweepStore::find_by_spec(const std::string& spec) {
  Stmt q(db_, std::string(kSweepColumns) + "WHERE spec = ?1 ORDER BY id DESC LIMIT 1", path_);
  q.bind(1, spec);
  if (!q.step()) return std::nullopt;
  return read_sweep(q);
}

std::vector<SweepRecord> SweepStore::list() {
  Stmt q(db_, std::string(kSweepColumns) + "ORDER BY id", path_);
  std::vector<SweepRecord> out;
  while (q.step()) out.push_back(read_sweep(q));
  return out;
}

void SweepStore::set_status(int64_t sweep_id, const std::string& status) {
  Stmt q(db_, "UPDATE sweeps SET status = ?2 WHERE id = ?1", path_ + ": sweep status");
  q.bind(1, sweep_id).bind(2, status).run();
}

void SweepStore::ensure_trials(int64_t sweep_id, int64_t count) {
  Transaction tx(db_, path_ + ": cannot add the sweep's trials");
  Stmt q(db_, "INSERT OR IGNORE INTO sweep_trials(sweep_id, trial) VALUES (?1, ?2)",
         path_ + ": cannot add the sweep's trials");
  for (int64_t i = 0; i < count; ++i) {
    q.bind(1, sweep_id).bind(2, i).run();
  }
  tx.commit();
}

int64_t SweepStore::requeue_unfinished(int64_t sweep_id) {
  Transaction tx(db_, path_ + ": cannot requeue the sweep's trials");
  const std::string host = host_name();
  int64_t n = 0;
  {
    Stmt f(db_,
           "UPDATE sweep_trials SET status = 'pending', pid = NULL WHERE sweep_id = ?1 AND "
           "status = 'failed'",
           path_);
    f.bind(1, sweep_id).run();
    n += sqlite3_changes(db_);
  }
  std::vector<int64_t> dead;
  {
    Stmt q(db_,
           "SELECT trial, pid FROM sweep_trials WHERE sweep_id = ?1 AND status = 'running' "
           "AND host = ?2",
           path_);
    q.bind(1, sweep_id).bind(2, host);
    while (q.step())
      if (!process_alive(q.null(1) ? 0 : q.i64(1))) dead.push_back(q.i64(0));
  }
  for (int64_t t : dead) {
    Stmt u(db_,
           "UPDATE sweep_trials SET status = 'pending', pid = NULL WHERE sweep_id = ?1 AND "
           "trial = ?2",
           path_);
    u.bind(1, sweep_id).bind(2, t).run();
    ++n;
  }
  tx.commit();
  return n;
}

std::optional<TrialClaim> SweepStore::claim(int64_t sweep_id) {
  Transaction tx(db_, path_ + ": cannot claim a trial");
  TrialClaim c;
  {
    Stmt q(db_,
           "SELECT trial, run_id FROM sweep_trials WHERE sweep_id = ?1 AND status = "
           "'pending' ORDER BY trial LIMIT 1",
           path_);
    q.bind(1, sweep_id);
    if (!q.step()) return std::nullopt;
    c.trial = q.i64(0);
    c.run_id = q.opt_i64(1);
  }
  Stmt u(db_,
         "UPDATE sweep_trials SET status = 'running', host = ?3, pid = ?4, claimed_at = ?5 "
         "WHERE sweep_id = ?1 AND trial = ?2",
         path_);
  u.bind(1, sweep_id).bind(2, c.trial).bind(3, host_name()).bind(4, int64_t{getpid()});
  u.bind(5, unix_now()).run();
  tx.commit();
  return c;
}

void SweepStore::set_trial_run(int64_t sweep_id, int64_t trial, int64_t run_id) {
  Stmt q(db_, "UPDATE sweep_trials SET run_id = ?3 WHERE sweep_id = ?1 AND trial = ?2",
         path_ + ": cannot record the trial's run");
  q.bind(1, sweep_id).bind(2, trial).bind(3, run_id).run();
}

void SweepStore::finish_trial(int64_t sweep_id, int64_t trial, bool done) {
  Stmt q(db_, "UPDATE sweep_trials SET status = ?3 WHERE sweep_id = ?1 AND trial = ?2",
         path_ + ": cannot finish the trial");
  q.bind(1, sweep_id).bind(2, trial).bind(3, std::string(done ? "done" : "failed")).run();
}

TrialCounts SweepStore::counts(int64_t sweep_id) {
  Stmt q(db_, "SELECT status, count(*) FROM sweep_trials WHERE sweep_id = ?1 GROUP BY status",
         path_);
  q.bind(1, sweep_id);
  TrialCounts c;
  while (q.step()) {
    const std::string s = q.text(0);
    const int64_t n = q.i64(1);
    if (s == "pending")
      c.pending = n;
    else if (s == "running")
      c.running = n;
    else if (s == "done")
      c.done = n;
    else
      c.failed = n;
  }
  return c;
}

}  // namespace bl
