#include "core/ffn/standard.h"

#include "core/config.h"

namespace bl {

StandardFFN::StandardFFN(const BlockConfig& c) {
  up_ = add_module("up_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  down_ = add_module("down_proj",
                     std::make_unique<Linear>(c.d_ff, c.d_model, c.bias, Init::kResidualNormal));
}

Tensor StandardFFN::forward(const Tensor& x) {
  return down_->forward_gelu(up_->forward(x));
}

Tensor StandardFFN::forward_add(const Tensor& x, const Tensor& residual) {
  return down_->forward_gelu(up_->forward(x), residual);
}

}  // namespace bl
