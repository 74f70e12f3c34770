// StoreWriter: a training run's writes to the experiment database, made on a
// background thread with its own connection, so a busy or slow database never
// stalls a training step (issue 18 B).
//
// The training thread only queues (post: a lock and a vector push). The
// writer commits in batches (flush_rows rows or flush_interval_s seconds, and
// at once for evaluations, checkpoint registrations and the final status).
// - Busy (another process holds the write lock): the batch is retried with
//   backoff (50 ms doubling to 1 s), as long as it takes; nothing is dropped.
// - Any other failure (full disk, I/O error, a read-only or damaged file):
//   the batch is appended to the run's write journal (store/write_journal.h)
//   and replayed by the next open that can write; a line on stderr says what
//   was kept where.
// - close(timeout) waits until everything queued is committed; what is still
//   not written when the timeout passes goes to the journal, and close()
//   returns a message saying exactly what and where.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/experiment_store.h"
#include "store/write_journal.h"

namespace bl {

/// How long the end of a run waits for a busy database before its last
/// writes go to the journal: $BLOCKLAB_STORE_RETRY_S, else 600 s.
double default_store_retry_s();

class StoreWriter {
 public:
  /// Opens the writer's own connection to `db_path` (errors are thrown here,
  /// on the caller's thread) and starts the thread.
  StoreWriter(const std::string& db_path, StoreOptions options);
  /// close(default_store_retry_s()), reporting on stderr.
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  /// Queues one write; never blocks on the database.
  void post(WriteItem item);
  /// Commits everything queued and stops the thread, waiting at most
  /// `timeout_s` for a busy database. Returns "" when all was written, else
  /// what was kept in which journal. Idempotent.
  std::string close(double timeout_s);

 private:
  void loop();
  bool write_batch(std::vector<WriteItem>& todo, bool force_flush);
  void spill(std::vector<WriteItem> items, const std::string& why);
  void spill_uncommitted(WriteItem* failed, const std::string& why);

  std::string db_path_;
  StoreOptions opt_;
  std::unique_ptr<ExperimentStore> store_;  // used only by the thread once started
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WriteItem> queue_;  // posted, not yet taken by the thread
  bool stop_ = false;
  double deadline_s_ = 0;            // steady seconds after which close() spills
  std::vector<WriteItem> inflight_;  // handed to store_, not yet committed
  std::string spilled_;              // messages of what went to journals
  std::thread thread_;
};

}  // namespace bl
