// Gated FFN (SwiGLU): down(silu(gate(x)) * up(x)), as in LLaMA; ffn_activation
// "gelu_tanh" makes it Gemma's GeGLU. Other gated
// units (gated_relu2) are this class with another gate activation.
#pragma once

#include "core/components.h"
#include "core/linear.h"

namespace bl {

class GatedFFN : public FeedForward {
 public:
  /// act(gate, up): the fused gated activation (ops/activation.h).
  using GatedActivation = Tensor (*)(const Tensor& gate, const Tensor& up);
  explicit GatedFFN(const BlockConfig& c, GatedActivation act = nullptr);
  Tensor forward(const Tensor& x) override;
  Tensor forward_add(const Tensor& x, const Tensor& residual) override;

 private:
  GatedActivation act_;
  Linear* gate_;  // (d_ff, d_model)
  Linear* up_;    // (d_ff, d_model)
  Linear* down_;  // (d_model, d_ff), residual init
};

}  // namespace bl
