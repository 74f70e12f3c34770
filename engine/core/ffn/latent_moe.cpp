#include "core/ffn/latent_moe.h"

#include "core/config.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/shape_ops.h"

namespace bl {

LatentMoEFFN::LatentMoEFFN(const BlockConfig& c) {
  const int64_t latent = c.moe_latent_size.value_or(c.d_model / 4);
  router_ = add_module("router", std::make_unique<BalancedRouter>(c, "latent_moe"));
  down_ = add_module("latent_down_proj", std::make_unique<Linear>(c.d_model, latent, false));
  experts_ = add_module(
      "experts", std::make_unique<ExpertBank>(*c.n_experts, latent, c.moe_d_ff.value_or(c.d_ff),
                                              false, ExpertBank::Kind::kReLU2));
  up_ = add_module("latent_up_proj",
                   std::make_unique<Linear>(latent, c.d_model, false, Init::kResidualNormal));
  const int64_t shared = c.n_shared_experts.value_or(1) * c.shared_expert_d_ff.value_or(c.d_ff);
  if (shared > 0) {
    shared_up_ =
        add_module("shared_experts.up_proj", std::make_unique<Linear>(c.d_model, shared, false));
    shared_down_ =
        add_module("shared_experts.down_proj",
                   std::make_unique<Linear>(shared, c.d_model, false, Init::kResidualNormal));
  }
}

Tensor LatentMoEFFN::forward(const Tensor& x) {
  const int64_t n = x.rows();
  Tensor x2 = reshape(x, Shape{n, x.cols()});
  BalancedRouter::Routing r = router_->route(x2, layer_index());
  // The up projection is linear, so it runs once on the gated sum of the experts.
  Tensor z = run_experts(*experts_, down_->forward(x2), r.gates, r.dispatch, router_->top_k());
  Tensor y = up_->forward(z);
  if (shared_up_) y = add(y, shared_down_->forward(relu2(shared_up_->forward(x2))));
  return reshape(y, x.shape());
}

int64_t LatentMoEFFN::active_parameters() {
  int64_t n = router_->num_parameters() + down_->num_parameters() + up_->num_parameters() +
              router_->top_k() * experts_->params_per_expert();
  if (shared_up_) n += shared_up_->num_parameters() + shared_down_->num_parameters();
  return n;
}

}  // namespace bl
