#include "core/attention/gated_gqa.h"

#include "core/config.h"
#include "ops/activation.h"
#include "ops/elementwise.h"

namespace bl {

GatedGQA::GatedGQA(const BlockConfig& c) : GQA(c, c.effective_n_kv_heads()) {
  gate_proj_ =
      add_module("gate_proj", std::make_unique<Linear>(d_model_, n_heads_ * head_dim_, c.bias));
}

Tensor GatedGQA::forward(const Tensor& x, PositionEncoding& pos, LayerState* state) {
  Tensor gate = sigmoid(gate_proj_->forward(x));
  return o_proj_->forward(mul(mix(x, pos, state), gate));
}

}  // namespace bl
