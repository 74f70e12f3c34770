#include "core/ffn/standard.h"

#include "core/config.h"
#include "ops/activation.h"

namespace bl {

StandardFFN::StandardFFN(const BlockConfig& c)
    : tanh_(c.ffn_activation.value_or("gelu") == "gelu_tanh") {
  up_ = add_module("up_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  down_ = add_module("down_proj",
                     std::make_unique<Linear>(c.d_ff, c.d_model, c.bias, Init::kResidualNormal));
}

Tensor StandardFFN::forward(const Tensor& x) {
  return forward_add(x, Tensor());
}

Tensor StandardFFN::forward_add(const Tensor& x, const Tensor& residual) {
  // The exact GELU is fused into the down projection; the tanh form (imported
  // GPT-2 models) takes the plain path.
  if (tanh_) return down_->forward(gelu_tanh(up_->forward(x)), residual);
  return down_->forward_gelu(up_->forward(x), residual);
}

}  // namespace bl
