// Multi-head latent attention (DeepSeek-V2/V3). Keys and values come from a
// shared low-rank latent c_kv = RMSNorm(W_dkv x) (kv_lora_rank); position
// enters only through a decoupled RoPE part: every query head has
// [q_rope (rope_dim) | q_nope (head_dim)] and every key head
// [k_rope | k_nope_h], where k_rope = RoPE(W_kr x) is one key shared by all
// heads and k_nope_h = W_uk_h c_kv, v_h = W_uv_h c_kv (head_dim each).
// Scores are scaled by 1/sqrt(head_dim + rope_dim) (μP: 1/(head_dim + rope_dim)).
//
// Position: MLA rotates its rope part itself (base rope_theta, rotate-half
// layout, ops/rope.h) whatever the block's `position` says, because a rotation of the
// up-projected keys could not be cached as a latent; rope_dim unset = 0 as in
// lmxlab (no decoupled RoPE: the block then needs an absolute position or none).
// q_lora_rank set: q = W_uq RMSNorm(W_dq x); unset: one q projection.
// Bias (when `bias`) only on the q and output projections, as in lmxlab.
//
// Decoding caches only c_kv and k_rope per position (kv_lora_rank + rope_dim
// floats) and uses weight absorption: q_nope_h W_uk_h becomes a query against
// the latent itself, and W_uv_h is applied after attending over the latent, so
// the cache is never up-projected. The full (training) pass up-projects once
// per token, which is cheaper there (head_dim < kv_lora_rank). Cached rows are
// constants: a cached pass differentiates only through the current queries.
#pragma once

#include "core/components.h"
#include "core/linear.h"
#include "tensor/parameter.h"

namespace bl {

/// Per position: [k_rope (rope_dim) | c_kv (kv_lora_rank)], nothing else.
struct MLACacheState : CloneableState<MLACacheState> {
  int64_t max_len = 0, width = 0;  // width = rope_dim + kv_lora_rank
  Buffer rows;                     // (batch, max_len, width)

 protected:
  std::vector<Buffer*> batch_buffers() override { return {&rows}; }
};

class MLA : public Attention {
 public:
  explicit MLA(const BlockConfig& c);
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  double mixing_flops_per_token(int64_t seq_len) const override;

 private:
  /// (B, T, H * (rope_dim + head_dim)), rope part rotated for positions offset...
  Tensor queries(const Tensor& x, int64_t offset);
  /// The shared RoPE key (B, T, rope_dim), rotated.
  Tensor rope_key(const Tensor& x, int64_t offset);
  Tensor forward_full(const Tensor& x);
  Tensor forward_cached(const Tensor& x, MLACacheState& st);

  int64_t d_model_, n_heads_, head_dim_, kv_rank_, q_rank_, rope_dim_;
  float scale_, theta_, eps_;
  Linear* q_proj_ = nullptr;  // when q_lora_rank is unset
  Linear* q_down_ = nullptr;  // when q_lora_rank is set
  Parameter* q_norm_ = nullptr;
  Linear* q_up_ = nullptr;
  Linear* kv_down_;  // W_dkv: d_model -> kv_lora_rank
  Parameter* kv_norm_;
  Linear* k_rope_ = nullptr;  // W_kr: d_model -> rope_dim (when rope_dim > 0)
  Linear* k_up_;              // W_uk: kv_lora_rank -> H * head_dim
  Linear* v_up_;              // W_uv: kv_lora_rank -> H * head_dim
  Linear* o_proj_;
};

}  // namespace bl
