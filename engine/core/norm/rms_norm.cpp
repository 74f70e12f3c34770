#include "core/norm/rms_norm.h"

#include "core/config.h"
#include "ops/elementwise.h"
#include "ops/norm.h"

namespace bl {

RMSNormComponent::RMSNormComponent(const BlockConfig& c)
    : RMSNormComponent(c.d_model, float(c.norm_eps), c.norm_unit_offset) {}

RMSNormComponent::RMSNormComponent(int64_t dim, float eps, bool unit_offset)
    : eps_(eps), unit_offset_(unit_offset) {
  weight_ = add_parameter("weight", Shape{dim}, unit_offset ? Init::kZeros : Init::kOnes);
}

Tensor RMSNormComponent::forward(const Tensor& x) {
  // 1 + weight is formed in float first, as Gemma's reference does, so an
  // imported model computes the same rounded scale.
  return rms_norm(x, unit_offset_ ? add_scalar(weight_->tensor(), 1.0f) : weight_->tensor(), eps_);
}

}  // namespace bl
