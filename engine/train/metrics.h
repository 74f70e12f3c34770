// What the trainer reports, step by step and at the end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bl {

/// One optimizer step.
struct StepMetrics {
  int64_t step = 0;                 // 0-based index of the step just taken
  double loss = 0;                  // mean train loss over the step's micro-batches
  double learning_rate = 0;         // lr used by this step
  double grad_norm = 0;             // global L2 norm before clipping
  double tokens_per_sec = 0;        // this step's throughput
  double step_time_ms = 0;          // wall time of this step
  int64_t tokens_seen = 0;          // cumulative training tokens after this step
  double wall_time_s = 0;           // seconds since training started
  std::optional<double> eval_loss;  // set on steps followed by an evaluation
  /// Auxiliary losses and diagnostics the model emitted (MoE balance and
  /// z-losses, expert load, MTP loss), averaged over the step's micro-batches.
  /// `loss` above is the language-model cross-entropy alone.
  std::vector<std::pair<std::string, double>> extra;
};

/// Sets m.extra's entry `name` to v, adding it if absent. Reuses the entry (and
/// its string) when present, so a warm step does not allocate.
inline void set_extra(StepMetrics& m, std::string_view name, double v) {
  for (auto& e : m.extra)
    if (e.first == name) {
      e.second = v;
      return;
    }
  m.extra.emplace_back(std::string(name), v);
}

enum class RunStatus { kRunning, kCompleted, kStopped, kDiverged, kFailed, kInterrupted };
const char* to_string(RunStatus s);

struct TrainSummary {
  RunStatus status = RunStatus::kRunning;
  int64_t steps = 0;               // optimizer steps taken
  double final_train_loss = 0;     // mean of the last (up to) 10 step losses
  std::optional<double> val_loss;  // last evaluation
  std::optional<double> best_val_loss;
  double tokens_per_sec = 0;  // steady state: steps after the first 5 (as torch_ref)
  double median_step_ms = 0;
  double elapsed_s = 0;
  int64_t params = 0;
  std::string message;  // why it stopped, for stopped/diverged/failed
};

}  // namespace bl
