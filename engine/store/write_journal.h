// Writes the experiment database could not take (full disk, a lock held past
// the writer's retry deadline, ...) are kept, not dropped: appended (fsync) to
// <database dir>/runs/<run id>/pending-writes.jsonl, one JSON object a line,
// and replayed by the next read-write open of that database that can write
// them (ExperimentStore's constructor), after which the file is removed.
// Journals of runs still `running` in a live process are left to that process.
// A replayed line that was already committed (a crash between commit and
// removal, or a replay that failed after committing part of a journal)
// repeats a metric row; a torn last line (crash while appending) is skipped.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/metrics.h"

namespace bl {

class ExperimentStore;

/// One write of a training run, as queued by StoreWriter.
struct WriteItem {
  enum class Kind { kMetric, kEval, kCheckpoint, kFinish };
  Kind kind = Kind::kMetric;
  int64_t run_id = 0;
  int64_t step = 0;
  double wall_time = 0;
  double value = 0;
  std::string name;                          // metric / eval name
  std::string path, sha256;                  // checkpoint
  RunStatus status = RunStatus::kCompleted;  // finish
  nlohmann::json summary;                    // finish
  std::string message;                       // finish
};

/// <directory of db_path>/runs/<run_id>/pending-writes.jsonl
std::string write_journal_path(const std::string& db_path, int64_t run_id);

/// A checkpoint registration is also written ahead, before it is queued, to
/// <database dir>/runs/<run id>/pending-checkpoint-<step>.json (fsync) and
/// removed once committed, so a process killed while waiting for a busy
/// database still leaves its final checkpoint registered by the next open.
std::string checkpoint_intent_path(const std::string& db_path, int64_t run_id, int64_t step);
void write_checkpoint_intent(const std::string& db_path, const WriteItem& checkpoint);
void remove_checkpoint_intent(const std::string& db_path, const WriteItem& checkpoint);

/// Appends the items to their runs' journals (fsync). Throws
/// std::runtime_error naming the file if it cannot be written.
void append_write_journal(const std::string& db_path, const std::vector<WriteItem>& items);

/// Applies one item to the store (metrics are buffered, the rest commit).
void apply_write(ExperimentStore& store, const WriteItem& item);

/// Replays every journal and checkpoint intent of the store's database (see
/// above; a checkpoint already registered is not registered twice); failures
/// leave the files in place and are reported on stderr. Returns the items
/// replayed.
size_t replay_write_journals(ExperimentStore& store);

/// "12 metric rows, 1 checkpoint registration, the final status" for messages.
std::string describe_writes(const std::vector<WriteItem>& items);

}  // namespace bl
