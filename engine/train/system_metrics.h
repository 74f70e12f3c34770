// System metrics of a run: process CPU %, resident memory and thread count,
// sampled at most every `period_s` of wall time (and at the first and last
// step) into the step's metrics as "sys/cpu_percent", "sys/rss_mb" and
// "sys/threads", so the store and the workbench's charts get them like any
// other metric. Linux /proc; elsewhere only CPU % (getrusage) is reported.
#pragma once

#include <chrono>
#include <cstdint>

#include "train/callbacks.h"

namespace bl {

/// One reading of this process.
struct ProcessSample {
  double cpu_s = 0;   // user + system CPU time of all threads, seconds
  double rss_mb = 0;  // resident set size, MiB (0 if unknown)
  int threads = 0;    // threads of the process (0 if unknown)
};

/// Reads the process's CPU time (getrusage), RSS (/proc/self/statm) and
/// thread count (/proc/self/status) into fixed buffers: no allocation.
ProcessSample sample_process();

class SystemMetrics : public Callback {
 public:
  explicit SystemMetrics(double period_s = 2.0) : period_s_(period_s) {}
  void on_train_begin(Trainer& t) override;
  void on_step_metrics(Trainer& t, StepMetrics& m) override;

  /// Samples taken so far (for tests).
  int64_t samples() const { return samples_; }

 private:
  using Clock = std::chrono::steady_clock;
  double period_s_;
  Clock::time_point last_wall_{};
  double last_cpu_s_ = 0;
  int64_t samples_ = 0;
};

}  // namespace bl
