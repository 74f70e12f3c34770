// Latent MoE (Nemotron-H / Nemotron 3; lmxlab LatentMoEFFN): the router reads
// the full hidden state; the routed experts are relu2 FFNs
// (down(relu(up z)^2), width moe_d_ff, unset = d_ff) working in a latent
// z = down_proj(x) of size moe_latent_size (unset = d_model / 4); their
// weighted sum is projected back by up_proj. Plus n_shared_experts (unset = 1)
// relu2 shared experts at full width (shared_expert_d_ff, unset = d_ff, as
// lmxlab), fused into one FFN. Sigmoid scores with a correction bias used for
// selection only (BalancedRouter; lmxlab also adds it to the gates, which
// DeepSeek V3 / Nemotron-H do not). No biases anywhere.
#pragma once

#include "core/components.h"
#include "core/ffn/moe_routing.h"
#include "core/linear.h"

namespace bl {

class LatentMoEFFN : public FeedForward {
 public:
  explicit LatentMoEFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;
  /// Router + latent projections + top_k routed experts + the shared experts.
  int64_t active_parameters() override;
  BalancedRouter& router() { return *router_; }

 private:
  BalancedRouter* router_;
  Linear* down_;  // (latent, d_model)
  ExpertBank* experts_;
  Linear* up_;                     // (d_model, latent), residual init
  Linear* shared_up_ = nullptr;    // (n_shared * shared width, d_model)
  Linear* shared_down_ = nullptr;  // (d_model, n_shared * shared width), residual init
};

}  // namespace bl
