#include "core/ffn/gated.h"

#include "core/config.h"
#include "ops/activation.h"

namespace bl {

GatedFFN::GatedFFN(const BlockConfig& c, GatedActivation act)
    : act_(act                                                ? act
           : c.ffn_activation.value_or("silu") == "gelu_tanh" ? geglu_tanh
                                                              : swiglu) {
  gate_ = add_module("gate_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  up_ = add_module("up_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  down_ = add_module("down_proj",
                     std::make_unique<Linear>(c.d_ff, c.d_model, c.bias, Init::kResidualNormal));
}

Tensor GatedFFN::forward(const Tensor& x) {
  return down_->forward(act_(gate_->forward(x), up_->forward(x)));
}

Tensor GatedFFN::forward_add(const Tensor& x, const Tensor& residual) {
  return down_->forward(act_(gate_->forward(x), up_->forward(x)), residual);
}

}  // namespace bl
