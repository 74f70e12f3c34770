#include "core/ffn/gated_relu2.h"

#include "core/config.h"
#include "ops/activation.h"

namespace bl {

GatedReLU2FFN::GatedReLU2FFN(const BlockConfig& c) {
  gate_ = add_module("gate_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  up_ = add_module("up_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  down_ = add_module("down_proj",
                     std::make_unique<Linear>(c.d_ff, c.d_model, c.bias, Init::kResidualNormal));
}

Tensor GatedReLU2FFN::forward(const Tensor& x) {
  return down_->forward(relu2_glu(gate_->forward(x), up_->forward(x)));
}

}  // namespace bl
