// Grouped-query attention (Ainslie et al.): n_heads query heads share
// n_kv_heads key/value heads; n_kv_heads == 1 is MQA, == n_heads is MHA.
// Optional per-head RMS qk_norm (OLMo 2) before RoPE, μP 1/d_head scaling.
#pragma once

#include "core/components.h"
#include "core/linear.h"
#include "ops/attention.h"
#include "tensor/parameter.h"

namespace bl {

/// KV cache: keys and values of every consumed position.
struct KVCacheState : CloneableState<KVCacheState> {
  int64_t max_len = 0, width = 0;  // width = n_kv_heads * head_dim
  Buffer k, v;                     // (batch, max_len, width)

 protected:
  std::vector<Buffer*> batch_buffers() override { return {&k, &v}; }
};

class GQA : public Attention {
 public:
  explicit GQA(const BlockConfig& c);
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  Tensor forward_add(const Tensor& x, PositionEncoding& pos, LayerState* state,
                     const Tensor& residual) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  double mixing_flops_per_token(int64_t seq_len) const override;

 protected:
  GQA(const BlockConfig& c, int64_t n_kv_heads);
  /// Masking options for this variant (sliding window, chunks) on top of the causal mask.
  virtual AttentionOptions options(PositionEncoding& pos) const;
  /// The attention output before o_proj, (B, T, n_heads * head_dim): projections,
  /// qk_norm, rotation, then attention() or attend_cached(). Variants that
  /// transform it (output gates) build forward() on this.
  Tensor mix(const Tensor& x, PositionEncoding& pos, LayerState* state);
  /// Decoding step: q, k, v of T new tokens at positions [state.length, +T)
  /// (already normed and rotated) -> attention output; stores k and v in the
  /// state and advances its length. Default: a full KV cache (KVCacheState).
  virtual Tensor attend_cached(const Tensor& q, const Tensor& k, const Tensor& v,
                               AttentionOptions opt, LayerState& state);

  int64_t d_model_, n_heads_, n_kv_heads_, head_dim_;
  float scale_;
  Linear *q_proj_, *k_proj_, *v_proj_, *o_proj_;
  Parameter* q_norm_ = nullptr;  // (head_dim) when qk_norm
  Parameter* k_norm_ = nullptr;
  float norm_eps_;
};

}  // namespace bl
