// Gated FFN (SwiGLU): down(silu(gate(x)) * up(x)), as in LLaMA.
#pragma once

#include "core/components.h"
#include "core/linear.h"

namespace bl {

class GatedFFN : public FeedForward {
 public:
  explicit GatedFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;

 private:
  Linear* gate_;  // (d_ff, d_model)
  Linear* up_;    // (d_ff, d_model)
  Linear* down_;  // (d_model, d_ff), residual init
};

}  // namespace bl
