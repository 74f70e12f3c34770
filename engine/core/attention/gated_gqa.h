// Gated attention (Qiu et al. 2025; Qwen3-Next): GQA whose output is gated
// elementwise by g = sigmoid(x W_g) before o_proj, W_g: d_model -> n_heads *
// head_dim. The gate is query-dependent and lets heads output ~0 (no
// attention sink needed).
#pragma once

#include "core/attention/gqa.h"

namespace bl {

class GatedGQA : public GQA {
 public:
  explicit GatedGQA(const BlockConfig& c);
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  // forward() is its own, so not GQA's fused residual add.
  Tensor forward_add(const Tensor& x, PositionEncoding& pos, LayerState* state,
                     const Tensor& residual) override {
    return Attention::forward_add(x, pos, state, residual);
  }

 private:
  Linear* gate_proj_;  // (n_heads * head_dim, d_model), initialised like q_proj
};

}  // namespace bl
