#include "train/train_config.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace bl {

namespace {

// Every TrainConfig field; one list drives reading, writing and known keys.
template <class T, class F>
void visit_fields(T& t, F&& f) {
  f("learning_rate", t.learning_rate);
  f("weight_decay", t.weight_decay);
  f("warmup_steps", t.warmup_steps);
  f("max_steps", t.max_steps);
  f("batch_size", t.batch_size);
  f("grad_accumulation_steps", t.grad_accumulation_steps);
  f("max_grad_norm", t.max_grad_norm);
  f("eval_interval", t.eval_interval);
  f("log_interval", t.log_interval);
  f("checkpoint_interval", t.checkpoint_interval);
  f("optimizer", t.optimizer);
  f("lr_schedule", t.lr_schedule);
  f("compile_step", t.compile_step);
  f("seed", t.seed);
  f("seq_len", t.seq_len);
  f("min_lr_ratio", t.min_lr_ratio);
  f("beta1", t.beta1);
  f("beta2", t.beta2);
  f("eps", t.eps);
  f("momentum", t.momentum);
  f("eval_batches", t.eval_batches);
  f("val_fraction", t.val_fraction);
  f("threads", t.threads);
  f("flop_budget", t.flop_budget);
  f("time_budget_s", t.time_budget_s);
  f("diagnostics_interval", t.diagnostics_interval);
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string one_of(const std::string& field, const std::string& v,
                   const std::vector<std::string>& known) {
  std::string msg =
      field + ": unknown " + field.substr(field.rfind('.') + 1) + " '" + v + "'; known: ";
  for (size_t i = 0; i < known.size(); ++i) msg += (i ? ", " : "") + known[i];
  return msg;
}

}  // namespace

const std::vector<std::string>& known_optimizers() {
  static const std::vector<std::string> v{"adafactor", "adamw", "lion", "sgd"};
  return v;
}

const std::vector<std::string>& known_lr_schedules() {
  static const std::vector<std::string> v{"constant", "cosine", "linear"};
  return v;
}

void to_json(nlohmann::json& j, const TrainConfig& t) {
  j = nlohmann::json::object();
  visit_fields(t, [&](const char* key, const auto& v) { j[key] = v; });
}

nlohmann::ordered_json train_config_to_ordered_json(const TrainConfig& t) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  visit_fields(t, [&](const char* key, const auto& v) { j[key] = v; });
  return j;
}

std::vector<std::string> train_config_field_names() {
  std::vector<std::string> names;
  TrainConfig t;
  visit_fields(t, [&](const char* key, const auto&) { names.push_back(key); });
  return names;
}

void add_train_key_hints(JsonObjectReader& r, const std::string& prefix) {
  // Names used by the PyTorch reference configs and common trainers.
  const std::pair<const char*, const char*> aliases[] = {
      {"lr", "learning_rate"},        {"steps", "max_steps"},
      {"grad_clip", "max_grad_norm"}, {"clip_grad_norm", "max_grad_norm"},
      {"warmup", "warmup_steps"},     {"batch", "batch_size"},
      {"min_lr", "min_lr_ratio"},     {"val_batches", "eval_batches"},
      {"num_threads", "threads"},     {"betas", "beta1"},
  };
  for (auto& [alias, field] : aliases) r.hint(alias, prefix + field);
}

void read_train_config(const nlohmann::json& j, const std::string& path, TrainConfig& t,
                       std::vector<std::string>& errors) {
  JsonObjectReader r(j, path, errors);
  visit_fields(t, [&](const char* key, auto& v) { r.get(key, v); });
  add_train_key_hints(r, "");
  r.finish();
}

void from_json(const nlohmann::json& j, TrainConfig& t) {
  std::vector<std::string> errors;
  read_train_config(j, "", t, errors);
  if (!errors.empty()) throw ConfigError(errors);
}

TrainConfig train_config_from_json(const nlohmann::json& j) {
  TrainConfig t;
  from_json(j, t);
  return t;
}

nlohmann::json train_config_to_json(const TrainConfig& t) {
  return t;
}

TrainConfig load_train_config(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  TrainConfig t;
  std::vector<std::string> errors;
  read_train_config(j, "", t, errors);
  if (errors.empty()) errors = validation_errors(t);
  for (auto& e : errors) e = path + ": " + e;
  if (!errors.empty()) throw ConfigError(errors);
  return t;
}

void save_train_config(const std::string& path, const TrainConfig& t) {
  write_json_file(path, train_config_to_ordered_json(t));
}

std::vector<std::string> validation_errors(const TrainConfig& t, const std::string& path) {
  std::vector<std::string> e;
  auto p = [&](const char* f) { return path.empty() ? std::string(f) : path + "." + f; };
  auto n = [](int64_t v) { return std::to_string(v); };
  auto at_least = [&](const char* f, int64_t v, int64_t lo) {
    if (v < lo) e.push_back(p(f) + " (" + n(v) + ") must be >= " + n(lo));
  };
  auto at_most = [&](const char* f, int64_t v, int64_t hi) {
    if (v > hi) e.push_back(p(f) + " (" + n(v) + ") must be <= " + n(hi));
  };
  auto finite_positive = [&](const char* f, double v) {
    if (!(v > 0) || !std::isfinite(v))
      e.push_back(p(f) + " (" + num(v) + ") must be a finite number > 0");
  };
  auto in_range = [&](const char* f, double v, double lo, double hi, bool hi_open,
                      const char* range) {
    bool ok = v >= lo && (hi_open ? v < hi : v <= hi);
    if (!ok) e.push_back(p(f) + " (" + num(v) + ") must be in " + range);
  };

  finite_positive("learning_rate", t.learning_rate);
  if (!(t.weight_decay >= 0) || !std::isfinite(t.weight_decay))
    e.push_back(p("weight_decay") + " (" + num(t.weight_decay) + ") must be a finite number >= 0");
  at_least("warmup_steps", t.warmup_steps, 0);
  at_least("max_steps", t.max_steps, 1);
  if (t.max_steps >= 1 && t.warmup_steps > t.max_steps)
    e.push_back(p("warmup_steps") + " (" + n(t.warmup_steps) + ") must be <= " + p("max_steps") +
                " (" + n(t.max_steps) + ")");
  at_least("batch_size", t.batch_size, 1);
  at_least("grad_accumulation_steps", t.grad_accumulation_steps, 1);
  if (!(t.max_grad_norm >= 0) || !std::isfinite(t.max_grad_norm))
    e.push_back(p("max_grad_norm") + " (" + num(t.max_grad_norm) +
                ") must be a finite number >= 0 (0 disables clipping)");
  at_least("eval_interval", t.eval_interval, 0);
  at_least("log_interval", t.log_interval, 0);
  at_least("checkpoint_interval", t.checkpoint_interval, 0);
  auto& opts = known_optimizers();
  if (std::find(opts.begin(), opts.end(), t.optimizer) == opts.end())
    e.push_back(one_of(p("optimizer"), t.optimizer, opts));
  auto& scheds = known_lr_schedules();
  if (std::find(scheds.begin(), scheds.end(), t.lr_schedule) == scheds.end())
    e.push_back(one_of(p("lr_schedule"), t.lr_schedule, scheds));
  at_least("seed", t.seed, 0);
  at_least("seq_len", t.seq_len, 1);
  in_range("min_lr_ratio", t.min_lr_ratio, 0.0, 1.0, false, "[0, 1]");
  in_range("beta1", t.beta1, 0.0, 1.0, true, "[0, 1)");
  in_range("beta2", t.beta2, 0.0, 1.0, true, "[0, 1)");
  finite_positive("eps", t.eps);
  in_range("momentum", t.momentum, 0.0, 1.0, true, "[0, 1)");
  at_least("eval_batches", t.eval_batches, 1);
  if (!(t.val_fraction > 0 && t.val_fraction < 1))
    e.push_back(p("val_fraction") + " (" + num(t.val_fraction) + ") must be in (0, 1)");
  at_least("threads", t.threads, 0);
  at_least("diagnostics_interval", t.diagnostics_interval, 0);
  for (const auto& [field, v] : {std::pair<const char*, double>{"flop_budget", t.flop_budget},
                                 {"time_budget_s", t.time_budget_s}})
    if (!(v >= 0) || !std::isfinite(v))
      e.push_back(p(field) + " (" + num(v) + ") must be a finite number >= 0 (0: no budget)");
  at_most("max_steps", t.max_steps, TrainLimits::kMaxSteps);
  at_most("batch_size", t.batch_size, TrainLimits::kBatchSize);
  at_most("seq_len", t.seq_len, TrainLimits::kSeqLen);
  at_most("grad_accumulation_steps", t.grad_accumulation_steps, TrainLimits::kGradAccumulation);
  at_most("eval_batches", t.eval_batches, TrainLimits::kEvalBatches);
  at_most("threads", t.threads, TrainLimits::kThreads);
  return e;
}

std::vector<std::string> compatibility_errors(const ModelConfig& m, const TrainConfig& t) {
  std::vector<std::string> e;
  int64_t layers = m.block_configs.empty() ? 1 : int64_t(m.block_configs.size());
  for (int64_t i = 0; i < layers; ++i) {
    const BlockConfig& b = m.block_configs.empty() ? m.block : m.block_configs[size_t(i)];
    std::string where =
        m.block_configs.empty() ? "model.block" : "model.block_configs[" + std::to_string(i) + "]";
    if (t.seq_len > b.max_seq_len)
      e.push_back("train.seq_len (" + std::to_string(t.seq_len) + ") must be <= " + where +
                  ".max_seq_len (" + std::to_string(b.max_seq_len) + ")");
  }
  return e;
}

void validate(const TrainConfig& t) {
  auto e = validation_errors(t);
  if (!e.empty()) throw ConfigError(e);
}

}  // namespace bl
