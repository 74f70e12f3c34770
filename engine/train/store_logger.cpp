#include "train/store_logger.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "io/sha256.h"
#include "store/process_status.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace bl {

namespace fs = std::filesystem;

namespace {
nlohmann::json opt_json(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? nlohmann::json(*v) : nlohmann::json();
}
nlohmann::json num_json(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}
}  // namespace

DatasetFingerprint fingerprint_dataset(const std::string& path) {
  DatasetFingerprint d;
  std::error_code ec;
  d.path = fs::absolute(path, ec).lexically_normal().string();
  if (ec) d.path = path;
  d.size = int64_t(fs::file_size(path, ec));
  if (ec) throw std::runtime_error("cannot read " + path + ": " + ec.message());
  d.sha256 = sha256_file(path);
  return d;
}

std::string run_files_dir(const std::string& db_path, int64_t run_id) {
  fs::path db = fs::absolute(db_path).lexically_normal();
  return (db.parent_path() / "runs" / std::to_string(run_id)).string();
}

std::string run_checkpoint_dir(const std::string& db_path, int64_t run_id, int64_t step) {
  return (fs::path(run_files_dir(db_path, run_id)) / "checkpoints" /
          ("step-" + std::to_string(step)))
      .string();
}

std::optional<CheckpointRecord> latest_checkpoint(ExperimentStore& store, int64_t run_id) {
  std::vector<CheckpointRecord> all = store.checkpoints(run_id);  // ordered by step
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    std::error_code ec;
    if (fs::exists(fs::path(it->path) / "checkpoint.json", ec)) return *it;
  }
  return std::nullopt;
}

nlohmann::json summary_json(const TrainSummary& s) {
  nlohmann::json j = {{"status", to_string(s.status)},
                      {"steps", s.steps},
                      {"final_train_loss", num_json(s.final_train_loss)},
                      {"val_loss", opt_json(s.val_loss)},
                      {"best_val_loss", opt_json(s.best_val_loss)},
                      {"tokens_per_sec", num_json(s.tokens_per_sec)},
                      {"median_step_ms", num_json(s.median_step_ms)},
                      {"elapsed_s", num_json(s.elapsed_s)},
                      {"params", s.params}};
  if (!s.message.empty()) j["message"] = s.message;
  return j;
}

StoreLogger::StoreLogger(ExperimentStore& store, RunRecord record)
    : store_(store), record_(std::move(record)) {}

StoreLogger::~StoreLogger() {
  if (run_id_ == 0 || finished_) return;
  try {
    fail("training ended without finishing the run (an error interrupted it)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[store] cannot mark run %lld failed: %s\n", (long long)run_id_, e.what());
  }
}

int64_t StoreLogger::begin(Trainer& t) {
  if (run_id_ != 0) return run_id_;
  if (record_.model_config.is_null() || record_.model_config.empty())
    record_.model_config = model_config_to_json(t.model().config());
  if (record_.train_config.is_null() || record_.train_config.empty())
    record_.train_config = train_config_to_json(t.config());
  if (!record_.param_count) record_.param_count = t.model().num_parameters();
  record_.status = RunStatus::kRunning;
  start_unix_ = unix_now();
  record_.started_at = start_unix_;
  // Before the first step, so waiting for a busy database stalls nothing.
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(default_store_retry_s());
  for (double backoff = 0.05;; backoff = std::min(1.0, backoff * 2)) {
    try {
      run_id_ = store_.create_run(record_);
      break;
    } catch (const StoreError& e) {
      if (!e.busy() || std::chrono::steady_clock::now() >= until) throw;
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    }
  }
  writer_ = std::make_unique<StoreWriter>(store_.path(), store_.options());
  return run_id_;
}

void StoreLogger::post(WriteItem w) {
  w.run_id = run_id_;
  if (!writer_) return apply_write(store_, w);  // only before begin() or after the end
  writer_->post(std::move(w));
}

void StoreLogger::close_writer() {
  if (!writer_) return;
  const std::string kept = writer_->close(default_store_retry_s());
  if (!kept.empty())
    std::fprintf(stderr, "[store] run %lld: not everything reached the database:\n%s\n",
                 (long long)run_id_, kept.c_str());
  writer_.reset();
}

void StoreLogger::on_step_end(Trainer&, const StepMetrics& m) {
  const auto t0 = std::chrono::steady_clock::now();
  const double wall = start_unix_ + m.wall_time_s;
  auto metric = [&](const char* name, double v) {
    WriteItem w;
    w.step = m.step;
    w.wall_time = wall;
    w.name = name;
    w.value = v;
    post(std::move(w));
  };
  metric("loss", m.loss);
  metric("learning_rate", m.learning_rate);
  metric("grad_norm", m.grad_norm);
  metric("tokens_per_sec", m.tokens_per_sec);
  metric("step_time_ms", m.step_time_ms);
  metric("tokens_seen", double(m.tokens_seen));
  for (const auto& [name, value] : m.extra) metric(name.c_str(), value);
  overhead_ms_ +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  step_ms_ += m.step_time_ms;
}

void StoreLogger::on_eval_end(Trainer&, int64_t step, double eval_loss) {
  // The eval row commits at once (with the queued metrics): evaluations are
  // rare and worth having on disk early.
  WriteItem w;
  w.step = step;
  w.wall_time = unix_now();
  w.name = "eval_loss";
  w.value = eval_loss;
  post(w);
  w.kind = WriteItem::Kind::kEval;
  post(std::move(w));
}

void StoreLogger::on_train_end(Trainer&, const TrainSummary& s) {
  nlohmann::json summary = summary_json(s);
  summary["logging_overhead_pct"] = step_ms_ > 0 ? 100.0 * overhead_ms_ / step_ms_ : 0.0;
  for (auto& [k, v] : extra_.items()) summary[k] = v;
  finish(s.status, summary, s.message);
}

void StoreLogger::finish(RunStatus status, const nlohmann::json& summary,
                         const std::string& message) {
  finished_ = true;  // even if the write fails: do not retry from the destructor
  if (!writer_) {
    store_.finish_run(run_id_, status, summary, message);
    return;
  }
  WriteItem w;
  w.kind = WriteItem::Kind::kFinish;
  w.status = status;
  w.summary = summary;
  w.message = message;
  post(std::move(w));
  close_writer();  // waits for the database (bounded); keeps what it cannot write
}

void StoreLogger::add_checkpoint(int64_t step, const std::string& dir) {
  const fs::path abs = fs::absolute(dir).lexically_normal();
  WriteItem w;
  w.kind = WriteItem::Kind::kCheckpoint;
  w.step = step;
  w.path = abs.string();
  w.sha256 = checkpoint_sha256(abs.string());
  if (writer_) {
    w.run_id = run_id_;
    try {  // written ahead: registered by the next open even if this process is killed
      write_checkpoint_intent(store_.path(), w);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[store] %s\n", e.what());
    }
    post(std::move(w));
  } else
    store_.add_checkpoint(run_id_, step, w.path, w.sha256);
}

void StoreLogger::fail(const std::string& message) {
  if (run_id_ == 0 || finished_) return;
  nlohmann::json summary = {{"status", "failed"}, {"message", message}};
  for (auto& [k, v] : extra_.items()) summary[k] = v;
  finish(RunStatus::kFailed, summary, message);
}

nlohmann::json finish_from_final_checkpoint(ExperimentStore& store, const RunRecord& run,
                                            const CheckpointRecord& ck) {
  if (run.status == RunStatus::kCompleted || run.status == RunStatus::kRunning) return nullptr;
  const CheckpointInfo info = read_checkpoint_info(ck.path);
  if (info.step < info.train.max_steps) return nullptr;
  const MetricSeries loss = store.metrics(run.id, "loss");
  double tail = 0;
  const size_t n = std::min<size_t>(10, loss.size());
  for (size_t i = loss.size() - n; i < loss.size(); ++i) tail += loss.values[i];
  nlohmann::json summary = {
      {"status", "completed"},
      {"steps", info.step},
      {"final_train_loss", n ? num_json(tail / double(n)) : nlohmann::json()},
      {"params", run.param_count ? nlohmann::json(*run.param_count) : nlohmann::json()}};
  const std::vector<EvalRecord> evals = store.evals(run.id, "eval_loss");
  if (!evals.empty()) summary["val_loss"] = num_json(evals.back().value);
  if (!run.summary.is_null() && run.summary.is_object())
    for (auto& [k, v] : run.summary.items())
      if (!summary.contains(k)) summary[k] = v;  // e.g. a fine-tune's "lora" spec
  const std::optional<int64_t> last = store.latest_step(run.id);
  summary["finished_from_checkpoint"] = {
      {"checkpoint", ck.path},
      {"step", info.step},
      {"last_logged_step", last ? nlohmann::json(*last) : nlohmann::json()},
      {"note",
       "the process ended after registering its final checkpoint but before recording its "
       "summary; metrics not yet committed then are missing, the checkpoint holds the final "
       "state"}};
  store.finish_run(run.id, RunStatus::kCompleted, summary,
                   "finished from its final checkpoint (step " + std::to_string(info.step) +
                       ") after the process ended early");
  return summary;
}

}  // namespace bl
