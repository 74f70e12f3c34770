// The experiment store: every training run, its metrics, evaluations, samples
// and checkpoints, recorded in one SQLite database (sqlite3 C API, no Qt).
//
// Threading (research.md B.7): one ExperimentStore = one SQLite connection,
// opened in multi-thread mode. Use an object from one thread at a time; give
// every training thread its own writer and the UI its own read-only store
// (open_readonly). WAL mode lets readers and the writer run concurrently;
// writers serialise on BEGIN IMMEDIATE + busy_timeout.
//
// Durability: metric rows are buffered in memory and committed in batches
// (every `flush_rows` rows or `flush_interval_s` seconds, on flush(), on any
// other write, on finish_run and on close/destruction). A committed batch
// survives kill -9 (WAL + synchronous=NORMAL); an OS crash may lose the last
// commits. Runs whose process died are marked `interrupted` on the next
// read-write open.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "train/metrics.h"

namespace bl {

namespace detail {
struct StoreImpl;
}

/// Every store failure: bad file, newer schema, unwritable path, SQLite error.
/// The message names the database file.
class StoreError : public std::runtime_error {
 public:
  explicit StoreError(const std::string& what, int sqlite_code = 0)
      : std::runtime_error(what), code_(sqlite_code) {}
  /// Extended SQLite result code of the failure (0 if not from SQLite).
  int sqlite_code() const { return code_; }
  /// Another connection holds the lock (SQLITE_BUSY / SQLITE_LOCKED): retrying may succeed.
  bool busy() const { return (code_ & 0xff) == 5 || (code_ & 0xff) == 6; }
  /// The file is damaged (SQLITE_CORRUPT): it may still be read, not written.
  bool damaged() const { return (code_ & 0xff) == 11; }

 private:
  int code_;
};

/// "running", "completed", ... (the strings stored in runs.status).
const char* run_status_name(RunStatus s);
/// Inverse of run_status_name; nullopt for unknown strings.
std::optional<RunStatus> parse_run_status(std::string_view s);

/// $BLOCKLAB_DB, else $XDG_DATA_HOME/blocklab/experiments.db, else
/// $HOME/.local/share/blocklab/experiments.db (empty variables count as unset).
std::string default_db_path();

/// What this process runs on ({"cpu", "kernel_isa", "blas", "threads"}):
/// RunRecord::machine when left empty.
nlohmann::json this_machine_json();

/// One row of `runs` (plus its tags). Fields marked "auto" are filled by
/// create_run when left at their default.
struct RunRecord {
  int64_t id = 0;  // assigned by create_run
  std::string name;
  RunStatus status = RunStatus::kRunning;
  std::string status_message;         // why it stopped / failed / was interrupted
  double created_at = 0;              // unix seconds; auto: now
  std::optional<double> started_at;   // auto: now
  std::optional<double> finished_at;  // set by finish_run / crash recovery
  nlohmann::json model_config = nlohmann::json::object();
  nlohmann::json train_config = nlohmann::json::object();
  std::string preset;
  std::string dataset_path;
  std::optional<int64_t> dataset_size;  // bytes
  std::string dataset_sha256;
  nlohmann::json tokenizer = nlohmann::json::object();
  std::optional<int64_t> param_count;
  std::vector<std::string> tags;  // sorted, unique (stored in run_tags)
  std::string notes;
  std::string program_version;  // auto: BLOCKLAB_VERSION
  std::string host;             // auto: gethostname()
  int64_t pid = 0;              // auto: getpid()
  std::optional<int64_t> parent_run_id;
  nlohmann::json
      summary;  // null until finish_run, unless set at create (a fine-tune's "lora" spec)
  // auto: {"cpu", "kernel_isa", "blas", "threads"} of the creating process
  nlohmann::json machine = nlohmann::json::object();
  /// Identity across databases (`runs import` merges by it); auto: a new v4 UUID.
  std::string uuid;
  std::optional<int64_t> sweep_id;     // the sweep this run is a trial of
  std::optional<int64_t> sweep_trial;  // its trial index in that sweep
};

/// A new random (version 4) UUID, lower-case text.
std::string new_uuid();

/// Filter for list_runs; unset fields match everything.
struct RunFilter {
  std::optional<RunStatus> status = std::nullopt;
  std::optional<std::string> tag = std::nullopt;
  std::optional<int64_t> sweep_id = std::nullopt;
  int64_t limit = 0;         // 0 = no limit
  bool newest_first = true;  // order by id descending
};

/// One metric as columns (ready for plotting). NaN values round-trip.
struct MetricSeries {
  std::vector<int64_t> steps;
  std::vector<double> wall_times;
  std::vector<double> values;
  size_t size() const { return steps.size(); }
};

struct EvalRecord {
  int64_t step = 0;
  std::string name;
  double value = 0;
};

struct SampleRecord {
  int64_t id = 0;
  int64_t step = 0;
  std::string prompt;
  std::string text;
  double temperature = 0;
  double created_at = 0;
};

struct CheckpointRecord {
  int64_t id = 0;
  int64_t step = 0;
  std::string path;
  std::string sha256;
  double created_at = 0;
};

/// Write-batching knobs of a read-write store.
struct StoreOptions {
  size_t flush_rows = 256;          // commit buffered metrics after this many rows
  double flush_interval_s = 1.0;    // ... or when the oldest flush is this old (checked on log)
  bool recover_interrupted = true;  // mark runs of dead processes `interrupted` on open
  /// Caps the database file (0: no cap). Writes beyond it fail exactly as on a
  /// full disk (SQLITE_FULL, transaction rolled back), which is how that path
  /// is tested; also usable to bound a store's size.
  int64_t max_size_bytes = 0;
  /// How long one write waits for another connection's lock before failing
  /// with a busy StoreError (the background writer retries with backoff).
  int busy_timeout_ms = 5000;
  /// Bound on PRAGMA quick_check at open (0: skip). A damaged file is refused
  /// for writing; a check that does not finish in time is skipped.
  double quick_check_s = 1.0;
  /// Replay writes a run kept in runs/<id>/pending-writes.jsonl when the
  /// database could not take them (store/write_journal.h).
  bool replay_pending = true;
};

class ExperimentStore {
 public:
  /// Opens (creating it and its parent directories if needed) a read-write store,
  /// refuses a damaged file (PRAGMA quick_check, bounded by quick_check_s),
  /// migrates the schema to the current version, recovers interrupted runs and
  /// replays writes kept in runs' pending-writes journals.
  /// $BLOCKLAB_DB_MAX_BYTES sets max_size_bytes when that is 0 (fault tests).
  explicit ExperimentStore(const std::string& path, const StoreOptions& options = {});
  /// Opens an existing store read-only (for UIs/CLIs browsing runs); write
  /// methods throw StoreError. Every read is one short transaction, so a
  /// reader never blocks a writer. Where a WAL database cannot be opened
  /// normally (read-only directory or mount: no -shm can be created), it is
  /// opened immutable (a note on stderr says changes still in its -wal are
  /// not seen).
  static ExperimentStore open_readonly(const std::string& path);

  ExperimentStore(ExperimentStore&&) noexcept;
  ExperimentStore& operator=(ExperimentStore&&) noexcept;
  /// Flushes buffered metrics; failures are reported on stderr (use close() to see them).
  ~ExperimentStore();

  /// Flushes and closes the connection; throws if the final flush fails.
  void close();
  const std::string& path() const;
  bool read_only() const;
  /// The options this store was opened with (defaults for a read-only store).
  const StoreOptions& options() const;
  /// Drops the buffered, uncommitted metric rows (after the caller kept them
  /// elsewhere, e.g. in a write journal); returns how many.
  size_t discard_pending();

  // --- writes -------------------------------------------------------------
  /// Inserts a run (fills the auto fields), returns its id.
  int64_t create_run(const RunRecord& run);
  /// Sets status and status message (does not touch finished_at).
  void set_status(int64_t run_id, RunStatus status, const std::string& message = "");
  /// Buffers one metric row; commits when the batch is full or old enough.
  /// No allocation in steady state (after a name was first seen).
  void log_metric(int64_t run_id, int64_t step, double wall_time, std::string_view name,
                  double value);
  /// Commits all buffered metric rows in one transaction. On failure the rows
  /// stay buffered (retried by the next flush) and StoreError is thrown.
  void flush();
  /// Number of buffered, not yet committed metric rows.
  size_t pending_rows() const;
  /// Records an evaluation result (committed immediately, with pending metrics).
  void log_eval(int64_t run_id, int64_t step, std::string_view name, double value);
  /// Records a generated text sample; returns its id.
  int64_t log_sample(int64_t run_id, int64_t step, const std::string& prompt,
                     const std::string& text, double temperature);
  /// Records a checkpoint file; returns its id.
  int64_t add_checkpoint(int64_t run_id, int64_t step, const std::string& path,
                         const std::string& sha256);
  /// Flushes, then sets the final status (not kRunning), finished_at = now, summary.
  void finish_run(int64_t run_id, RunStatus status, const nlohmann::json& summary,
                  const std::string& message = "");
  /// Replaces the run's tags (deduplicated).
  void set_tags(int64_t run_id, const std::vector<std::string>& tags);
  void set_notes(int64_t run_id, const std::string& notes);
  void set_name(int64_t run_id, const std::string& name);
  /// Replaces the summary of a run while it runs (finish_run writes the final one).
  void set_summary(int64_t run_id, const nlohmann::json& summary);
  /// Deletes a run and everything logged for it; children keep a NULL parent.
  /// Returns false if no such run.
  bool delete_run(int64_t run_id);

  // --- reads (on a writer these flush first, so you read your own writes) ---
  std::vector<RunRecord> list_runs(const RunFilter& filter = {});
  std::optional<RunRecord> get_run(int64_t run_id);
  /// Rows of one metric with step > after_step, ordered by step (pass the last
  /// step seen to poll incrementally).
  MetricSeries metrics(int64_t run_id, std::string_view name, int64_t after_step = INT64_MIN);
  /// Names of the metrics logged for a run, sorted.
  std::vector<std::string> metric_names(int64_t run_id);
  /// Largest step with a metric row; nullopt if none.
  std::optional<int64_t> latest_step(int64_t run_id);
  /// Evaluations of a run (all names if `name` is empty), ordered by step.
  std::vector<EvalRecord> evals(int64_t run_id, std::string_view name = {});
  std::vector<SampleRecord> samples(int64_t run_id);
  std::vector<CheckpointRecord> checkpoints(int64_t run_id);
  /// Schema version of the open database (PRAGMA user_version).
  int schema_version();

 private:
  explicit ExperimentStore(std::unique_ptr<detail::StoreImpl> impl);
  detail::StoreImpl& im();  // throws if closed
  std::unique_ptr<detail::StoreImpl> impl_;
};

}  // namespace bl
