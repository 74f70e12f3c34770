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
