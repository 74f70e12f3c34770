// Gated squared-ReLU FFN: down(relu(gate(x))^2 * up(x)) (the ReGLU family with
// Primer's squared activation).
#pragma once

#include "core/components.h"
#include "core/linear.h"

namespace bl {

class GatedReLU2FFN : public FeedForward {
 public:
  explicit GatedReLU2FFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;

 private:
  Linear* gate_;  // (d_ff, d_model)
  Linear* up_;    // (d_ff, d_model)
  Linear* down_;  // (d_model, d_ff), residual init
};

}  // namespace bl
