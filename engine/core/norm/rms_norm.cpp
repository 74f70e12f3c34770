#include "core/norm/rms_norm.h"

#include "core/config.h"
#include "ops/norm.h"

namespace bl {

RMSNormComponent::RMSNormComponent(const BlockConfig& c)
    : RMSNormComponent(c.d_model, float(c.norm_eps)) {}

RMSNormComponent::RMSNormComponent(int64_t dim, float eps) : eps_(eps) {
  weight_ = add_parameter("weight", Shape{dim}, Init::kOnes);
}

Tensor RMSNormComponent::forward(const Tensor& x) { return rms_norm(x, weight_->tensor(), eps_); }

}  // namespace bl
