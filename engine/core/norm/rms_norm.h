// RMSNorm over d_model (weight only); with BlockConfig::norm_unit_offset the
// scale is 1 + weight (Gemma).
#pragma once

#include "core/components.h"

namespace bl {

class RMSNormComponent : public Norm {
 public:
  explicit RMSNormComponent(const BlockConfig& c);
  RMSNormComponent(int64_t dim, float eps, bool unit_offset = false);
  Tensor forward(const Tensor& x) override;

 private:
  Parameter* weight_;
  float eps_;
  bool unit_offset_;
};

}  // namespace bl
