// Building blocks shared by the mixture-of-experts feed-forwards (moe,
// shared_moe, latent_moe): top-k expert selection (optionally group-limited,
// with a selection-only bias), the dispatch plan that groups (token, slot)
// pairs by expert, the stacked expert weights that run one GEMM per expert on
// its contiguous rows, and the per-expert load statistics.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/module.h"
#include "tensor/tensor.h"

namespace bl {

struct BlockConfig;

/// n_experts of c, after checking the routing rules of config validation for
/// ffn `ffn` (ConfigError otherwise). LanguageModel validates its whole config;
/// this guards components built directly from a BlockConfig.
int64_t routed_experts(const BlockConfig& c, const char* ffn);

/// Picks k experts per token from scores (n, n_experts) [+ bias (n_experts),
/// for selection only; may be null]: out[t * k + j] is token t's j-th pick,
/// best first, ties to the lower index. Group-limited (DeepSeek V3) when
/// n_groups > 1: experts form n_groups consecutive groups, each scored by the sum
/// of its two best biased scores; only experts of the topk_groups best groups
/// are eligible. Selection is not differentiated.
void select_top_k(const float* scores, const float* bias, int64_t n, int64_t n_experts, int64_t k,
                  int64_t n_groups, int64_t topk_groups, int32_t* out);

/// (token, slot) pairs grouped by expert; arrays live in the graph arena.
struct Dispatch {
  int64_t rows = 0;            // n_tokens * k
  int32_t* token = nullptr;    // token of each dispatched row
  int32_t* slot = nullptr;     // its slot t * k + j in the selection
  int64_t* offsets = nullptr;  // (n_experts + 1): rows of expert e are [offsets[e], offsets[e+1])
  int64_t count(int64_t e) const { return offsets[e + 1] - offsets[e]; }
};
/// Stable counting sort of the selection by expert.
Dispatch make_dispatch(const int32_t* expert, int64_t n_tokens, int64_t k, int64_t n_experts);

/// n_experts FFNs stored as stacked (n_experts, out, in) weights.
/// kSwiGLU: down(silu(gate x) * up x) (Mixtral / DeepSeek experts);
/// kReLU2: down(relu(up x)^2) (Nemotron-H experts).
class ExpertBank : public Module {
 public:
  enum class Kind { kSwiGLU, kReLU2 };
  ExpertBank(int64_t n_experts, int64_t d_in, int64_t d_ff, bool bias, Kind kind);
  /// xs (rows, d_in), grouped by expert as in `d` -> (rows, d_in).
  Tensor forward(const Tensor& xs, const Dispatch& d);
  int64_t params_per_expert() const { return per_expert_; }

 private:
  Kind kind_;
  Parameter *gate_w_ = nullptr, *up_w_, *down_w_;
  Parameter *gate_b_ = nullptr, *up_b_ = nullptr, *down_b_ = nullptr;
  int64_t per_expert_ = 0;
};

/// Routed output (n, d) = sum_j gates[t, j] * expert_{sel[t*k+j]}(x[t]): gathers
/// each expert's tokens into one contiguous buffer, one GEMM per expert,
/// weighted scatter-add back. x (n, d), gates (n, k).
Tensor run_experts(ExpertBank& experts, const Tensor& x, const Tensor& gates, const Dispatch& d,
                   int64_t k);

/// gates[t, j] = scores[t, sel[t, j]] / sum_j scores[t, sel[t, j]] * scale; with
/// k = 1 the score itself times scale (Switch / Llama 4), so the router still learns.
Tensor normalized_gates(const Tensor& scores, const int32_t* sel, int64_t k, float scale);

/// Per-expert load of one layer: emits "moe_load/layer{i}/expert{j}" metrics
/// (fraction of routed slots) and accumulates the counts of training forwards
/// (gradient recording on) for the aux-loss-free bias update.
class ExpertLoad {
 public:
  explicit ExpertLoad(int64_t n_experts) : pending_(size_t(n_experts), 0) {}
  void observe(const Dispatch& d, int64_t layer);
  /// bias_e += rate * sign(mean load - load_e) from the counts observed since the
  /// last call (DeepSeek V3 aux-loss-free balancing); false if none were observed.
  bool update_bias(float* bias, double rate);
  const std::vector<int64_t>& pending() const { return pending_; }

 private:
  std::vector<int64_t> pending_;
  std::vector<std::string> names_;
  int64_t names_layer_ = -1;
};

/// Sigmoid router with aux-loss-free load balancing (DeepSeek V3, Nemotron-H):
/// a per-expert bias shifts the scores for SELECTION only; the gates are the
/// unbiased scores renormalised over the picks, times moe_routed_scaling_factor.
/// After every optimizer step the bias moves by moe_bias_update_rate against the
/// observed load. The bias is a non-trainable Parameter: checkpoints save it,
/// optimizers and gradient clipping skip it.
class BalancedRouter : public Module {
 public:
  /// ffn: the owning component's name (for config errors).
  BalancedRouter(const BlockConfig& c, const char* ffn);
  struct Routing {
    Tensor gates;        // (n, k)
    const int32_t* sel;  // (n * k) picked experts
    Dispatch dispatch;
  };
  /// x (n, d_model); emits the per-expert load metrics of `layer`.
  Routing route(const Tensor& x, int64_t layer);
  void after_optimizer_step() override;
  Parameter* bias() { return bias_; }
  Parameter* weight() { return weight_; }
  int64_t top_k() const { return k_; }

 private:
  int64_t n_experts_, k_, n_groups_, topk_groups_;
  float scale_;
  double rate_;
  Parameter* weight_;  // (n_experts, d_model)
  Parameter* bias_;    // (n_experts), selection only
  ExpertLoad load_;
};

}  // namespace bl
