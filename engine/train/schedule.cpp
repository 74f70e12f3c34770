#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace bl {

LrSchedule::LrSchedule(Kind kind, const ScheduleOptions& opt) : kind_(kind), opt_(opt) {
  if (!std::isfinite(opt.lr) || opt.lr < 0.0f)
    throw std::invalid_argument("[schedule] lr must be finite and >= 0, got " +
                                std::to_string(opt.lr));
  if (opt.warmup_steps < 0)
    throw std::invalid_argument("[schedule] warmup_steps must be >= 0, got " +
                                std::to_string(opt.warmup_steps));
  if (opt.total_steps < 1)
    throw std::invalid_argument("[schedule] total_steps must be >= 1, got " +
                                std::to_string(opt.total_steps));
  if (!std::isfinite(opt.min_lr_ratio) || opt.min_lr_ratio < 0.0f)
    throw std::invalid_argument("[schedule] min_lr_ratio must be finite and >= 0, got " +
                                std::to_string(opt.min_lr_ratio));
}

float LrSchedule::lr_at(int64_t step) const {
  const double lr = opt_.lr;
  const int64_t warm = opt_.warmup_steps, total = opt_.total_steps;
  if (step < warm) return float(lr * double(step + 1) / double(warm));
  if (kind_ == Kind::kConstant || total <= warm) return float(lr);
  const double min_lr = lr * double(opt_.min_lr_ratio);
  const double p =
      std::min(1.0, double(step - warm) / double(std::max<int64_t>(1, total - 1 - warm)));
  if (kind_ == Kind::kLinear) return float(min_lr + (lr - min_lr) * (1.0 - p));
  return float(min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(std::numbers::pi * p)));
}

std::string LrSchedule::name() const {
  switch (kind_) {
    case Kind::kCosine:
      return "cosine";
    case Kind::kLinear:
      return "linear";
    case Kind::kConstant:
      return "constant";
  }
  return "?";
}

std::vector<std::string> schedule_names() {
  return {"cosine", "linear", "constant"};
}

LrSchedule make_schedule(std::string_view name, const ScheduleOptions& opt) {
  if (name == "cosine") return LrSchedule(LrSchedule::Kind::kCosine, opt);
  if (name == "linear") return LrSchedule(LrSchedule::Kind::kLinear, opt);
  if (name == "constant") return LrSchedule(LrSchedule::Kind::kConstant, opt);
  throw std::invalid_argument("[schedule] unknown lr schedule \"" + std::string(name) +
                              "\" (known: cosine, linear, constant)");
}

}  // namespace bl
