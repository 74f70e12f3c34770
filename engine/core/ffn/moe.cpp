#include "core/ffn/moe.h"

#include "core/aux_outputs.h"
#include "core/config.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/row_reduce.h"
#include "ops/shape_ops.h"
#include "ops/softmax.h"
#include "tensor/graph.h"

namespace bl {

MoEFFN::MoEFFN(const BlockConfig& c)
    : n_experts_(routed_experts(c, "moe")),
      k_(c.top_k_experts),
      aux_coef_(float(c.moe_aux_loss_coef)),
      z_coef_(float(c.moe_z_loss_coef)),
      load_(n_experts_) {
  router_ = add_module("router", std::make_unique<Linear>(c.d_model, n_experts_, false));
  experts_ = add_module(
      "experts", std::make_unique<ExpertBank>(n_experts_, c.d_model, c.moe_d_ff.value_or(c.d_ff),
                                              c.bias, ExpertBank::Kind::kSwiGLU));
}

Tensor MoEFFN::forward(const Tensor& x) {
  Graph& g = current_graph();
  const int64_t d = x.cols(), n = x.rows(), E = n_experts_;
  Tensor x2 = reshape(x, Shape{n, d});
  Tensor logits = router_->forward(x2);
  Tensor probs = softmax(logits);
  int32_t* sel = g.alloc_as<int32_t>(n * k_);
  select_top_k(probs.data(), nullptr, n, E, k_, 1, 1, sel);
  const Dispatch disp = make_dispatch(sel, n, k_, E);
  Tensor y = run_experts(*experts_, x2, normalized_gates(probs, sel, k_, 1.0f), disp, k_);
  load_.observe(disp, layer_index());

  // Load balancing: E * sum_i f_i * P_i with f constant (the selection has no gradient).
  Tensor f = g.empty(Shape{E});
  for (int64_t e = 0; e < E; ++e) f.data()[e] = float(disp.count(e)) / float(n * k_);
  Tensor aux = scale(sum(mul(probs, f)), float(E) / float(n));
  Tensor lse = logsumexp_rows(logits);
  aux_outputs().add_loss("moe_aux_loss", aux, aux_coef_);
  aux_outputs().add_loss("moe_z_loss", mean(mul(lse, lse)), z_coef_);
  return reshape(y, x.shape());
}

int64_t MoEFFN::active_parameters() {
  return router_->num_parameters() + k_ * experts_->params_per_expert();
}

}  // namespace bl
