// Learning-rate schedules: linear warmup, then cosine / linear decay to
// min_lr = min_lr_ratio * lr at the last step, or constant. The cosine schedule
// is torch_ref.py's lr_at() exactly:
//   step < warmup:          lr * (step + 1) / warmup
//   total_steps <= warmup:  lr
//   else p = min(1, (step - warmup) / max(1, total_steps - 1 - warmup))
//        cosine: min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * p))
//        linear: min_lr + (lr - min_lr) * (1 - p)
//        constant: lr
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bl {

struct ScheduleOptions {
  float lr = 1e-3f;           // peak learning rate
  int64_t warmup_steps = 0;   // linear warmup length
  int64_t total_steps = 1;    // horizon: min_lr is reached at step total_steps - 1
  float min_lr_ratio = 0.1f;  // min_lr = min_lr_ratio * lr (cosine, linear)
};

class LrSchedule {
 public:
  enum class Kind { kCosine, kLinear, kConstant };
  /// Throws std::invalid_argument on negative / non-finite values.
  LrSchedule(Kind kind, const ScheduleOptions& opt);

  /// Learning rate for 0-based step (computed in double, like torch_ref's Python).
  float lr_at(int64_t step) const;
  /// "cosine", "linear" or "constant".
  std::string name() const;
  Kind kind() const { return kind_; }
  const ScheduleOptions& options() const { return opt_; }

 private:
  Kind kind_;
  ScheduleOptions opt_;
};

/// Builds a schedule by name ("cosine", "linear", "constant"); throws listing the
/// known names otherwise.
LrSchedule make_schedule(std::string_view name, const ScheduleOptions& opt);

/// Names accepted by make_schedule.
std::vector<std::string> schedule_names();

}  // namespace bl
