#include "core/ffn/shared_moe.h"

#include "core/config.h"
#include "ops/elementwise.h"
#include "ops/shape_ops.h"

namespace bl {

SharedMoEFFN::SharedMoEFFN(const BlockConfig& c) {
  const int64_t width = c.moe_d_ff.value_or(c.d_ff);
  router_ = add_module("router", std::make_unique<BalancedRouter>(c, "shared_moe"));
  experts_ = add_module("experts", std::make_unique<ExpertBank>(*c.n_experts, c.d_model, width,
                                                                c.bias, ExpertBank::Kind::kSwiGLU));
  const int64_t n_shared = c.n_shared_experts.value_or(1);
  if (n_shared > 0) {
    BlockConfig sc = c;
    sc.d_ff = n_shared * c.shared_expert_d_ff.value_or(width);
    shared_ = add_module("shared_experts", std::make_unique<GatedFFN>(sc));
  }
}

Tensor SharedMoEFFN::forward(const Tensor& x) {
  const int64_t n = x.rows();
  Tensor x2 = reshape(x, Shape{n, x.cols()});
  BalancedRouter::Routing r = router_->route(x2, layer_index());
  Tensor y = run_experts(*experts_, x2, r.gates, r.dispatch, router_->top_k());
  if (shared_) y = add(y, shared_->forward(x2));
  return reshape(y, x.shape());
}

int64_t SharedMoEFFN::active_parameters() {
  return router_->num_parameters() + router_->top_k() * experts_->params_per_expert() +
         (shared_ ? shared_->num_parameters() : 0);
}

}  // namespace bl
