// Training callbacks: how metrics leave the trainer (CLI, store, GUI) and how
// policies such as early stopping act on them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <limits>

#include "train/metrics.h"

namespace bl {

class Trainer;

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer& t) {}
  /// Gradients of step `step` are final (summed over replicas and ranks),
  /// before clipping and the optimizer step (called when the loss is finite;
  /// the update is still skipped if the gradient norm is not). Callbacks that
  /// need the pre-update weights or the unclipped gradient look here.
  virtual void on_before_update(Trainer& t, int64_t step) {}
  /// Adds this callback's own metrics of the step to m.extra (set_extra);
  /// called for every callback before any on_step_end, so the store logger
  /// and the workbench see them with the step.
  virtual void on_step_metrics(Trainer& t, StepMetrics& m) {}
  virtual void on_step_end(Trainer& t, const StepMetrics& m) {}
  virtual void on_eval_end(Trainer& t, int64_t step, double eval_loss) {}
  virtual void on_train_end(Trainer& t, const TrainSummary& s) {}
};

/// Prints a metrics line every log_interval steps (and every eval) to a stream.
class MetricsLogger : public Callback {
 public:
  explicit MetricsLogger(int64_t log_interval = 10, std::FILE* out = stdout)
      : interval_(log_interval), out_(out) {}
  void on_step_end(Trainer& t, const StepMetrics& m) override;
  void on_eval_end(Trainer& t, int64_t step, double eval_loss) override;

 private:
  int64_t interval_;
  std::FILE* out_;
};

/// Stops training when eval loss has not improved by more than min_delta for
/// `patience` consecutive evaluations.
class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(int64_t patience = 5, double min_delta = 0.001)
      : patience_(patience), min_delta_(min_delta) {}
  void on_eval_end(Trainer& t, int64_t step, double eval_loss) override;
  double best() const { return best_; }
  int64_t evals_without_improvement() const { return waited_; }

 private:
  int64_t patience_;
  double min_delta_;
  double best_ = std::numeric_limits<double>::infinity();
  int64_t waited_ = 0;
};

/// Tokens/s and steps/s over a sliding window of recent steps, reported every
/// log_interval steps (to a stream if given).
class ThroughputMonitor : public Callback {
 public:
  explicit ThroughputMonitor(int64_t log_interval = 10, int64_t tokens_per_step = 0,
                             std::FILE* out = nullptr)
      : interval_(log_interval), tokens_per_step_(tokens_per_step), out_(out) {}
  void on_step_end(Trainer& t, const StepMetrics& m) override;
  double tokens_per_sec() const { return tokens_per_sec_; }
  double steps_per_sec() const { return steps_per_sec_; }

 private:
  int64_t interval_, tokens_per_step_;
  std::FILE* out_;
  std::deque<double> times_ms_;  // last log_interval step times
  double tokens_per_sec_ = 0, steps_per_sec_ = 0;
};

}  // namespace bl
