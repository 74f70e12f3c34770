// The sweeps of an experiment database and the local sweep's trial queue
// (tables sweeps and sweep_trials, schema v3). Workers of one sweep, in
// separate processes, each hold a SweepStore on the same database and claim
// trials in BEGIN IMMEDIATE transactions, so no trial runs twice at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace bl {

struct SweepRecord {
  int64_t id = 0;
  std::string uuid;
  std::string name;
  std::string spec;  // the resolved spec JSON as text
  double created_at = 0;
  std::string status;  // running | completed | submitted
};

/// A trial a worker has claimed; run_id is the run of an earlier attempt
/// (killed or failed), which the worker resumes when it has a checkpoint.
struct TrialClaim {
  int64_t trial = 0;
  std::optional<int64_t> run_id;
};

struct TrialCounts {
  int64_t pending = 0, running = 0, done = 0, failed = 0;
  int64_t total() const { return pending + running + done + failed; }
};

class SweepStore {
 public:
  /// Opens `db_path` (creating and migrating it through ExperimentStore first).
  explicit SweepStore(const std::string& db_path);
  ~SweepStore();
  SweepStore(const SweepStore&) = delete;
  SweepStore& operator=(const SweepStore&) = delete;

  /// A new sweep row; `uuid` empty = a new one.
  SweepRecord create(const std::string& name, const std::string& spec, const std::string& uuid,
                     const std::string& status);
  std::optional<SweepRecord> get(int64_t id);
  std::optional<SweepRecord> find_by_uuid(const std::string& uuid);
  /// The newest sweep with exactly this spec text (re-running SPEC finds it).
  std::optional<SweepRecord> find_by_spec(const std::string& spec);
  std::vector<SweepRecord> list();
  void set_status(int64_t sweep_id, const std::string& status);

  /// Adds trials 0..count-1 as pending (existing ones are kept as they are).
  void ensure_trials(int64_t sweep_id, int64_t count);
  /// Puts back to pending the trials that failed or stopped, and running ones
  /// whose worker process on this host is gone. Returns how many.
  int64_t requeue_unfinished(int64_t sweep_id);
  /// Claims the lowest pending trial for this process; nullopt when none is left.
  std::optional<TrialClaim> claim(int64_t sweep_id);
  /// Records the run a claimed trial is training.
  void set_trial_run(int64_t sweep_id, int64_t trial, int64_t run_id);
  /// Ends a claimed trial: done (a result, also a diverged one) or failed
  /// (retried when the sweep is resumed).
  void finish_trial(int64_t sweep_id, int64_t trial, bool done);
  TrialCounts counts(int64_t sweep_id);

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace bl
