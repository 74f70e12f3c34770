// LayerNorm over d_model (weight, and bias when BlockConfig::bias).
#pragma once

#include "core/components.h"

namespace bl {

class LayerNormComponent : public Norm {
 public:
  explicit LayerNormComponent(const BlockConfig& c);
  LayerNormComponent(int64_t dim, bool bias, float eps);
  Tensor forward(const Tensor& x) override;

 private:
  Parameter* weight_;
  Parameter* bias_ = nullptr;
  float eps_;
};

}  // namespace bl
