#include "core/norm/layer_norm.h"

#include "core/config.h"
#include "ops/norm.h"

namespace bl {

LayerNormComponent::LayerNormComponent(const BlockConfig& c)
    : LayerNormComponent(c.d_model, c.bias, float(c.norm_eps)) {}

LayerNormComponent::LayerNormComponent(int64_t dim, bool bias, float eps) : eps_(eps) {
  weight_ = add_parameter("weight", Shape{dim}, Init::kOnes);
  if (bias) bias_ = add_parameter("bias", Shape{dim}, Init::kZeros);
}

Tensor LayerNormComponent::forward(const Tensor& x) {
  return layer_norm(x, weight_->tensor(), bias_ ? bias_->tensor() : Tensor(), eps_);
}

}  // namespace bl
