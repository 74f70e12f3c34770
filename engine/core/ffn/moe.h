// Mixture of experts (Mixtral; lmxlab MoEFFN): a softmax router picks
// top_k_experts of n_experts SwiGLU experts (width moe_d_ff, unset = d_ff) per
// token, gated by the router probabilities renormalised over the picks (= a
// softmax over the top-k logits; with top_k_experts = 1 the gate is 1, as in
// lmxlab, and the router learns only through the auxiliary losses). Only the
// picked experts run, on their tokens.
// Emits the load-balancing loss "moe_aux_loss" = n_experts * sum_i f_i P_i
// (f_i: fraction of routed slots sent to expert i, P_i: mean router probability;
// 1 when balanced; weight moe_aux_loss_coef) and the router z-loss
// "moe_z_loss" = mean(logsumexp(logits)^2) (weight moe_z_loss_coef), plus the
// per-expert load "moe_load/layer{i}/expert{j}".
#pragma once

#include "core/components.h"
#include "core/ffn/moe_routing.h"
#include "core/linear.h"

namespace bl {

class MoEFFN : public FeedForward {
 public:
  explicit MoEFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;
  /// Router + top_k experts.
  int64_t active_parameters() override;

 private:
  int64_t n_experts_, k_;
  float aux_coef_, z_coef_;
  Linear* router_;  // (n_experts, d_model), no bias
  ExpertBank* experts_;
  ExpertLoad load_;
};

}  // namespace bl
