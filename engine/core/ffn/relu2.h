// Squared-ReLU FFN (So et al., Primer; Nemotron-H): down(relu(up(x))^2).
#pragma once

#include "core/components.h"
#include "core/linear.h"

namespace bl {

class ReLU2FFN : public FeedForward {
 public:
  explicit ReLU2FFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;

 private:
  Linear* up_;    // (d_ff, d_model)
  Linear* down_;  // (d_model, d_ff), residual init
};

}  // namespace bl
