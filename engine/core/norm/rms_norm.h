// RMSNorm over d_model (weight only).
#pragma once

#include "core/components.h"

namespace bl {

class RMSNormComponent : public Norm {
 public:
  explicit RMSNormComponent(const BlockConfig& c);
  RMSNormComponent(int64_t dim, float eps);
  Tensor forward(const Tensor& x) override;

 private:
  Parameter* weight_;
  float eps_;
};

}  // namespace bl
