#include "store/store_writer.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace bl {

namespace {
double steady_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double default_store_retry_s() {
  if (const char* v = std::getenv("BLOCKLAB_STORE_RETRY_S"); v && *v) {
    const double s = std::strtod(v, nullptr);
    if (s >= 0) return s;
  }
  return 600;
}

StoreWriter::StoreWriter(const std::string& db_path, StoreOptions options)
    : db_path_(db_path), opt_(options) {
  StoreOptions o = options;
  // Batching is done here; the connection commits only when told to.
  o.flush_rows = std::numeric_limits<size_t>::max() / 2;
  o.flush_interval_s = std::numeric_limits<double>::infinity();
  o.recover_interrupted = false;
  o.replay_pending = false;
  o.quick_check_s = 0;      // the caller's connection checked the file
  o.busy_timeout_ms = 100;  // short waits: the loop retries with backoff
  store_ = std::make_unique<ExperimentStore>(db_path, o);
  thread_ = std::thread([this] { loop(); });
}

StoreWriter::~StoreWriter() {
  const std::string lost = close(default_store_retry_s());
  if (!lost.empty()) std::fprintf(stderr, "[store] %s\n", lost.c_str());
}

void StoreWriter::post(WriteItem item) {
  const bool urgent = item.kind != WriteItem::Kind::kMetric;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(std::move(item));
  }
  if (urgent) cv_.notify_one();
}

std::string StoreWriter::close(double timeout_s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!thread_.joinable()) return spilled_;
    stop_ = true;
    deadline_s_ = steady_s() + timeout_s;
  }
  cv_.notify_one();
  thread_.join();
  try {
    if (store_) store_->close();
  } catch (const std::exception&) {
  }
  store_.reset();
  return spilled_;
}

void StoreWriter::spill(std::vector<WriteItem> items, const std::string& why) {
  if (items.empty()) return;
  const std::string what = describe_writes(items);
  const std::string journal = write_journal_path(db_path_, items.front().run_id);
  std::string msg;
  try {
    append_write_journal(db_path_, items);
    msg = why + "; kept " + what + " in " + journal +
          " (written to the database by its next open that can write)";
  } catch (const std::exception& e) {
    msg = why + "; LOST " + what + " (cannot keep them either: " + e.what() + ")";
  }
  std::fprintf(stderr, "[store] %s\n", msg.c_str());
  if (!spilled_.empty()) spilled_ += "\n";
  spilled_ += msg;
}

// Keeps the uncommitted rows (and `failed`, if any) in the journal after a
// failure that retrying will not fix.
void StoreWriter::spill_uncommitted(WriteItem* failed, const std::string& why) {
  std::vector<WriteItem> lost = std::move(inflight_);
  inflight_.clear();
  if (failed) lost.push_back(std::move(*failed));
  store_->discard_pending();
  spill(std::move(lost), why);
}

// Hands `todo` to the connection in order and commits (now, or when the
// batch is due). Returns false when the database was busy: the items not yet
// committed are back in `todo` for a retry. Other failures spill what failed
// (with the rows not yet committed) and carry on with the rest.
bool StoreWriter::write_batch(std::vector<WriteItem>& todo, bool force_flush) {
  size_t i = 0;
  for (; i < todo.size(); ++i) {
    try {
      apply_write(*store_, todo[i]);
      if (todo[i].kind == WriteItem::Kind::kMetric) {
        inflight_.push_back(std::move(todo[i]));
      } else {
        inflight_.clear();  // committed together with the buffered rows
        if (todo[i].kind == WriteItem::Kind::kCheckpoint)
          remove_checkpoint_intent(db_path_, todo[i]);
      }
    } catch (const StoreError& e) {
      if (e.busy()) {
        // The rows handed over stay buffered in the connection; the failed
        // item and the rest are retried.
        todo.erase(todo.begin(), todo.begin() + std::ptrdiff_t(i));
        return false;
      }
      spill_uncommitted(&todo[i], e.what());
    } catch (const std::exception& e) {  // not the database's: keep it, do not loop on it
      spill_uncommitted(&todo[i], e.what());
    }
  }
  todo.clear();
  if (force_flush || store_->pending_rows() >= opt_.flush_rows) {
    try {
      store_->flush();
      inflight_.clear();
    } catch (const StoreError& e) {
      if (e.busy()) return false;
      spill_uncommitted(nullptr, e.what());
    }
  }
  return true;
}

void StoreWriter::loop() {
  // Below the training and UI threads: the writer needs little CPU and never
  // a deadline, so on a busy machine it should not preempt them.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  std::vector<WriteItem> todo;
  double backoff = 0;  // > 0 while the database is busy
  double last_flush = steady_s();
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    const double wait = backoff > 0 ? backoff : opt_.flush_interval_s;
    cv_.wait_for(lk, std::chrono::duration<double>(std::max(0.001, std::min(wait, 1.0))), [&] {
      return stop_ ||
             (backoff == 0 && !queue_.empty() && queue_.back().kind != WriteItem::Kind::kMetric);
    });
    const bool stopping = stop_;
    const double deadline = deadline_s_;
    for (WriteItem& w : queue_) todo.push_back(std::move(w));
    queue_.clear();
    lk.unlock();

    const double now = steady_s();
    const bool due = stopping || now - last_flush >= opt_.flush_interval_s;
    const bool ok = todo.empty() && store_->pending_rows() == 0 ? true : write_batch(todo, due);
    if (ok) {
      backoff = 0;
      if (due) last_flush = now;
    } else {
      backoff = backoff == 0 ? 0.05 : std::min(1.0, backoff * 2);
    }
    if (stopping && !ok && steady_s() < deadline)  // no wait below while stopping
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    if (stopping && (ok || steady_s() >= deadline)) {
      if (!ok) {
        std::vector<WriteItem> rest = std::move(inflight_);
        inflight_.clear();
        for (WriteItem& w : todo) rest.push_back(std::move(w));
        todo.clear();
        store_->discard_pending();
        spill(std::move(rest), db_path_ + ": the database stayed locked by another process");
      }
      lk.lock();
      if (queue_.empty()) return;
      continue;
    }
    lk.lock();
  }
}

}  // namespace bl
