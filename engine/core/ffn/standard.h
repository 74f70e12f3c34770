// Standard FFN: down(GELU(up(x))), GELU exact (erf), or its tanh form with
// ffn_activation "gelu_tanh" (GPT-2's gelu_new).
#pragma once

#include "core/components.h"
#include "core/linear.h"

namespace bl {

class StandardFFN : public FeedForward {
 public:
  explicit StandardFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;
  Tensor forward_add(const Tensor& x, const Tensor& residual) override;

 private:
  bool tanh_ = false;
  Linear* up_;    // (d_ff, d_model)
  Linear* down_;  // (d_model, d_ff), residual init
};

}  // namespace bl
