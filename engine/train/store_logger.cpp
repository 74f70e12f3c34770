#include "train/store_logger.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "io/sha256.h"
#include "train/trainer.h"

namespace bl {

namespace fs = std::filesystem;

namespace {
double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
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
  run_id_ = store_.create_run(record_);
  return run_id_;
}

void StoreLogger::on_step_end(Trainer&, const StepMetrics& m) {
  const auto t0 = std::chrono::steady_clock::now();
  const double wall = start_unix_ + m.wall_time_s;
  store_.log_metric(run_id_, m.step, wall, "loss", m.loss);
  store_.log_metric(run_id_, m.step, wall, "learning_rate", m.learning_rate);
  store_.log_metric(run_id_, m.step, wall, "grad_norm", m.grad_norm);
  store_.log_metric(run_id_, m.step, wall, "tokens_per_sec", m.tokens_per_sec);
  store_.log_metric(run_id_, m.step, wall, "step_time_ms", m.step_time_ms);
  store_.log_metric(run_id_, m.step, wall, "tokens_seen", double(m.tokens_seen));
  for (const auto& [name, value] : m.extra) store_.log_metric(run_id_, m.step, wall, name, value);
  overhead_ms_ +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  step_ms_ += m.step_time_ms;
}

void StoreLogger::on_eval_end(Trainer&, int64_t step, double eval_loss) {
  // log_eval commits (with the buffered metrics): evaluations are rare and
  // worth having on disk at once.
  store_.log_metric(run_id_, step, unix_now(), "eval_loss", eval_loss);
  store_.log_eval(run_id_, step, "eval_loss", eval_loss);
}

void StoreLogger::on_train_end(Trainer&, const TrainSummary& s) {
  nlohmann::json summary = summary_json(s);
  summary["logging_overhead_pct"] = step_ms_ > 0 ? 100.0 * overhead_ms_ / step_ms_ : 0.0;
  for (auto& [k, v] : extra_.items()) summary[k] = v;
  store_.finish_run(run_id_, s.status, summary, s.message);
  finished_ = true;
}

void StoreLogger::add_checkpoint(int64_t step, const std::string& dir) {
  const fs::path abs = fs::absolute(dir).lexically_normal();
  store_.add_checkpoint(run_id_, step, abs.string(),
                        sha256_file((abs / "model.safetensors").string()));
}

void StoreLogger::fail(const std::string& message) {
  if (run_id_ == 0 || finished_) return;
  finished_ = true;  // even if the write below fails: do not retry from the destructor
  nlohmann::json summary = {{"status", "failed"}, {"message", message}};
  for (auto& [k, v] : extra_.items()) summary[k] = v;
  store_.finish_run(run_id_, RunStatus::kFailed, summary, message);
}

}  // namespace bl
