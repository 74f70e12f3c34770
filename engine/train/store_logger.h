// StoreLogger: records a training run in the experiment store: the run row at
// train begin, every step's metrics through the store's batched writer,
// evaluations, checkpoints and the final status + summary. Plus the helpers
// that place a run's files next to its database.
//
// Cost: per step six rows queued for a background writer with its own
// connection (store/store_writer.h), which commits a batch every flush_rows
// rows or flush_interval_s seconds (the store's options) and retries a busy
// database with backoff, so a lock held by another process never stalls a
// step. At the end the final status waits (up to default_store_retry_s) for
// the database; what still cannot be written is kept in the run's write
// journal and named on stderr. The logger measures the time it spends per
// step and reports it in the summary ("logging_overhead_pct" of step time).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "store/experiment_store.h"
#include "store/store_writer.h"
#include "train/callbacks.h"

namespace bl {

/// Where a dataset came from: absolute path, size in bytes, SHA-256 of the bytes.
struct DatasetFingerprint {
  std::string path;
  int64_t size = 0;
  std::string sha256;
};

/// Fingerprints a file (throws std::runtime_error naming it if unreadable).
DatasetFingerprint fingerprint_dataset(const std::string& path);

/// Directory holding a run's files: <directory of db_path>/runs/<run_id>.
std::string run_files_dir(const std::string& db_path, int64_t run_id);
/// Checkpoint directory of a run after `step` steps: <run files>/checkpoints/step-<step>.
std::string run_checkpoint_dir(const std::string& db_path, int64_t run_id, int64_t step);
/// The newest registered checkpoint of a run whose directory still holds a
/// checkpoint.json; nullopt if there is none.
std::optional<CheckpointRecord> latest_checkpoint(ExperimentStore& store, int64_t run_id);

/// The summary JSON stored with a finished run.
nlohmann::json summary_json(const TrainSummary& s);

/// A run that reached its last step and registered its final checkpoint but
/// whose process died before recording its summary (e.g. SIGKILL): when `ck`
/// (verified by the caller) is at or past the run's max_steps and the run is
/// not completed, marks it completed with a summary computed from its stored
/// metrics and noting it was finished from that checkpoint, and returns that
/// summary; otherwise returns null and changes nothing.
nlohmann::json finish_from_final_checkpoint(ExperimentStore& store, const RunRecord& run,
                                            const CheckpointRecord& ck);

class StoreLogger : public Callback {
 public:
  /// `record` describes the run (name, preset, dataset, tokenizer, tags, parent,
  /// ...). Model/train config and parameter count are taken from the trainer at
  /// begin() when left empty. The store must outlive the logger.
  StoreLogger(ExperimentStore& store, RunRecord record);
  /// A run that was begun but not finished (an exception ended training) is
  /// marked failed.
  ~StoreLogger() override;
  StoreLogger(const StoreLogger&) = delete;
  StoreLogger& operator=(const StoreLogger&) = delete;

  /// Creates the run row (once; on_train_begin calls it too). Returns the run id.
  int64_t begin(Trainer& t);
  void on_train_begin(Trainer& t) override { begin(t); }
  void on_step_end(Trainer& t, const StepMetrics& m) override;
  void on_eval_end(Trainer& t, int64_t step, double eval_loss) override;
  void on_train_end(Trainer& t, const TrainSummary& s) override;

  /// Registers a checkpoint directory with checkpoint_sha256 (its manifest's SHA-256).
  void add_checkpoint(int64_t step, const std::string& dir);
  /// Marks the run failed with `message` (no-op if not begun or already finished).
  void fail(const std::string& message);
  /// Fields merged into the summary at the end (e.g. where a resume started).
  nlohmann::json& summary_extra() { return extra_; }

  int64_t run_id() const { return run_id_; }
  bool finished() const { return finished_; }
  /// Time spent logging step metrics so far (ms) and the step time it relates to.
  double overhead_ms() const { return overhead_ms_; }
  double step_time_ms() const { return step_ms_; }

 private:
  void post(WriteItem w);
  void finish(RunStatus status, const nlohmann::json& summary, const std::string& message);
  void close_writer();

  ExperimentStore& store_;
  std::unique_ptr<StoreWriter> writer_;  // from begin(): all writes of the run
  RunRecord record_;
  nlohmann::json extra_ = nlohmann::json::object();
  int64_t run_id_ = 0;
  bool finished_ = false;
  double start_unix_ = 0;
  double overhead_ms_ = 0, step_ms_ = 0;
};

}  // namespace bl
