// DeepSeek V3 MoE (lmxlab SharedExpertMoEFFN): n_shared_experts always-active
// SwiGLU experts (unset = 1; width shared_expert_d_ff, unset = the routed
// width) plus top_k_experts of n_experts routed SwiGLU experts (width moe_d_ff,
// unset = d_ff). Sigmoid router with aux-loss-free balancing and group-limited
// routing (BalancedRouter); routed output scaled by moe_routed_scaling_factor.
// The shared experts run as one SwiGLU of width n_shared * width: the same
// function and parameter count as separate experts summed (with bias, the
// fused down projection has one bias instead of n_shared).
#pragma once

#include "core/components.h"
#include "core/ffn/gated.h"
#include "core/ffn/moe_routing.h"

namespace bl {

class SharedMoEFFN : public FeedForward {
 public:
  explicit SharedMoEFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;
  /// Router (weight and bias) + top_k routed experts + the shared experts.
  int64_t active_parameters() override;
  BalancedRouter& router() { return *router_; }

 private:
  BalancedRouter* router_;
  ExpertBank* experts_;
  GatedFFN* shared_ = nullptr;  // null when n_shared_experts = 0
};

}  // namespace bl
