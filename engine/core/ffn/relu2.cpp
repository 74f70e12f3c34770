#include "core/ffn/relu2.h"

#include "core/config.h"
#include "ops/activation.h"

namespace bl {

ReLU2FFN::ReLU2FFN(const BlockConfig& c) {
  up_ = add_module("up_proj", std::make_unique<Linear>(c.d_model, c.d_ff, c.bias));
  down_ = add_module("down_proj",
                     std::make_unique<Linear>(c.d_ff, c.d_model, c.bias, Init::kResidualNormal));
}

Tensor ReLU2FFN::forward(const Tensor& x) {
  return down_->forward(relu2(up_->forward(x)));
}

}  // namespace bl
