// Training configuration: lmxlab's TrainConfig (same names and defaults) plus
// the knobs needed to reproduce the PyTorch reference recipe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"

namespace bl {

struct TrainConfig {
  // --- lmxlab.training.config.TrainConfig ---
  double learning_rate = 3e-4;          // peak learning rate
  double weight_decay = 0.01;           // AdamW decoupled decay, applied to >=2-D tensors only
  int64_t warmup_steps = 100;           // linear warmup lr*(t+1)/warmup_steps
  int64_t max_steps = 1000;             // optimizer steps; also the lr schedule horizon
  int64_t batch_size = 32;              // sequences per micro-batch
  int64_t grad_accumulation_steps = 1;  // micro-batches per optimizer step
  double max_grad_norm = 1.0;           // global L2 clip; 0 disables clipping
  int64_t eval_interval = 100;          // steps between evaluations; 0 = only at the end
  int64_t log_interval = 10;            // steps between log lines; 0 = never
  int64_t checkpoint_interval = 500;    // steps between checkpoints; 0 = never
  std::string optimizer = "adamw";      // adamw | lion | adafactor | sgd
  std::string lr_schedule = "cosine";   // cosine | linear | constant (all after warmup)
  /// Accepted for lmxlab compatibility; a no-op here (there is no step compiler).
  bool compile_step = true;
  int64_t seed = 42;  // init, batch sampling and dropout

  // --- Blocklab extras (reproduce the PyTorch reference recipe) ---
  int64_t seq_len = 256;  // tokens per training window
  /// cosine/linear decay floor as a fraction of the peak lr (reached at the last step).
  double min_lr_ratio = 0.1;
  double beta1 = 0.9;         // AdamW beta1 (Lion uses 0.9/0.99, Adafactor no momentum)
  double beta2 = 0.95;        // AdamW beta2 (second-moment decay)
  double eps = 1e-8;          // AdamW denominator epsilon
  double momentum = 0.9;      // SGD momentum (0 = plain SGD)
  int64_t eval_batches = 20;  // batches per evaluation, drawn with a fixed generator
  double val_fraction = 0.1;  // last fraction of the corpus held out for validation
  int64_t threads = 0;        // worker threads; 0 = all cores
  /// Compute budget in training FLOPs (the engine's count, eval/flops.h); 0 =
  /// none. The run ends after the last step that fits, and the lr schedule
  /// ends there too, so runs of different models at one budget each complete
  /// their schedule (the compute-matched comparison).
  double flop_budget = 0;
  /// Wall-clock budget in seconds for one process's training and its final
  /// evaluation; 0 = none. No step starts unless it and the final evaluation
  /// still fit (judged by the slowest of the last few steps and the last
  /// evaluation); the final checkpoint is written after.
  double time_budget_s = 0;
  /// Steps between training diagnostics (per-layer gradient / weight norms,
  /// update ratio, effective rank; train/diagnostics.h); 0 = off.
  int64_t diagnostics_interval = 50;

  bool operator==(const TrainConfig&) const = default;
};

/// Optimizer names accepted by TrainConfig::optimizer.
const std::vector<std::string>& known_optimizers();
/// Schedule names accepted by TrainConfig::lr_schedule.
const std::vector<std::string>& known_lr_schedules();

/// Full TrainConfig as JSON.
void to_json(nlohmann::json& j, const TrainConfig& t);
/// Overlays the fields present in `j` onto `t`; ConfigError on unknown keys / wrong types.
void from_json(const nlohmann::json& j, TrainConfig& t);
/// Parses a TrainConfig (missing fields keep defaults); no rule checks.
TrainConfig train_config_from_json(const nlohmann::json& j);
/// Serialises a TrainConfig.
nlohmann::json train_config_to_json(const TrainConfig& t);
/// Same content as train_config_to_json, keys in declaration order (for files).
nlohmann::ordered_json train_config_to_ordered_json(const TrainConfig& t);
/// JSON keys of a TrainConfig, in declaration order.
std::vector<std::string> train_config_field_names();
/// Suggests TrainConfig fields (prefixed by `prefix`) for common foreign key
/// names such as "lr" and "steps".
void add_train_key_hints(JsonObjectReader& r, const std::string& prefix);
/// Reads, parses and validates a TrainConfig JSON file. Errors name the file.
TrainConfig load_train_config(const std::string& path);
/// Writes the config as indented JSON.
void save_train_config(const std::string& path, const TrainConfig& t);

/// Parses into `t`, appending problems (with paths prefixed by `path`) to `errors`.
void read_train_config(const nlohmann::json& j, const std::string& path, TrainConfig& t,
                       std::vector<std::string>& errors);

/// Upper bounds of a training run (validation names the field and the limit):
/// a typo such as eval_batches 1e12 fails as a rule instead of running forever.
struct TrainLimits {
  static constexpr int64_t kMaxSteps = 1'000'000'000;
  static constexpr int64_t kBatchSize = 65536;
  static constexpr int64_t kSeqLen = 1 << 20;
  static constexpr int64_t kGradAccumulation = 65536;
  static constexpr int64_t kEvalBatches = 65536;
  static constexpr int64_t kThreads = 4096;
};

/// Every rule violated by `t`, one message each; paths prefixed by `path`.
std::vector<std::string> validation_errors(const TrainConfig& t, const std::string& path = "");
/// Rules linking a model and its training run (e.g. seq_len <= max_seq_len).
std::vector<std::string> compatibility_errors(const ModelConfig& m, const TrainConfig& t);
/// Throws ConfigError listing every violated rule.
void validate(const TrainConfig& t);

}  // namespace bl
