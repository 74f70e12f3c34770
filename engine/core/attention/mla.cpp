#include "core/attention/mla.h"

#include <cmath>
#include <stdexcept>

#include "core/attention/cache_rows.h"
#include "core/config.h"
#include "ops/attention.h"
#include "ops/check.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/shape_ops.h"
#include "tensor/graph.h"

namespace bl {

namespace {
int64_t required_kv_rank(const BlockConfig& c) {
  if (!c.kv_lora_rank || *c.kv_lora_rank <= 0)
    throw std::invalid_argument("[mla] kv_lora_rank must be set and > 0");
  return *c.kv_lora_rank;
}
}  // namespace

MLA::MLA(const BlockConfig& c)
    : d_model_(c.d_model),
      n_heads_(c.n_heads),
      head_dim_(c.head_dim()),
      kv_rank_(required_kv_rank(c)),
      q_rank_(c.q_lora_rank.value_or(0)),
      rope_dim_(c.rope_dim.value_or(0)),
      theta_(float(c.rope_theta)),
      eps_(float(c.norm_eps)) {
  const int64_t qk = head_dim_ + rope_dim_;
  scale_ = c.mup ? 1.0f / float(qk) : 1.0f / std::sqrt(float(qk));
  if (q_rank_ > 0) {
    q_down_ = add_module("q_down", std::make_unique<Linear>(d_model_, q_rank_, false));
    q_norm_ = add_parameter("q_norm.weight", Shape{q_rank_}, Init::kOnes);
    q_up_ = add_module("q_up", std::make_unique<Linear>(q_rank_, n_heads_ * qk, false));
  } else {
    q_proj_ = add_module("q_proj", std::make_unique<Linear>(d_model_, n_heads_ * qk, c.bias));
  }
  kv_down_ = add_module("kv_down", std::make_unique<Linear>(d_model_, kv_rank_, false));
  kv_norm_ = add_parameter("kv_norm.weight", Shape{kv_rank_}, Init::kOnes);
  if (rope_dim_ > 0)
    k_rope_ = add_module("k_rope_proj", std::make_unique<Linear>(d_model_, rope_dim_, false));
  k_up_ = add_module("k_up", std::make_unique<Linear>(kv_rank_, n_heads_ * head_dim_, false));
  v_up_ = add_module("v_up", std::make_unique<Linear>(kv_rank_, n_heads_ * head_dim_, false));
  o_proj_ = add_module("o_proj", std::make_unique<Linear>(n_heads_ * head_dim_, d_model_, c.bias,
                                                          Init::kResidualNormal));
}

Tensor MLA::queries(const Tensor& x, int64_t offset) {
  Tensor q = q_proj_ ? q_proj_->forward(x)
                     : q_up_->forward(rms_norm(q_down_->forward(x), q_norm_->tensor(), eps_));
  // Per head [rope | nope]: rope() rotates the first rope_dim dims of each head.
  if (rope_dim_ > 0) q = rope(q, n_heads_, theta_, offset, rope_dim_);
  return q;
}

Tensor MLA::rope_key(const Tensor& x, int64_t offset) {
  return rope(k_rope_->forward(x), 1, theta_, offset);
}

Tensor MLA::forward(const Tensor& x, PositionEncoding& /*pos: MLA rotates itself*/,
                    LayerState* state) {
  if (!state) return forward_full(x);
  auto* st = dynamic_cast<MLACacheState*>(state);
  op_check(st != nullptr, "mla", "decoding state of another component");
  return forward_cached(x, *st);
}

Tensor MLA::forward_full(const Tensor& x) {
  const int64_t B = x.dim(0), T = x.dim(1), H = n_heads_;
  Tensor c = rms_norm(kv_down_->forward(x), kv_norm_->tensor(), eps_);
  Tensor k = k_up_->forward(c);
  Tensor v = v_up_->forward(c);
  Tensor q = queries(x, 0);
  if (rope_dim_ > 0) {
    // Every head's key is [k_rope | k_nope_h]: broadcast the shared key over heads.
    Tensor kr = reshape(rope_key(x, 0), Shape{B, T, 1, rope_dim_});
    Tensor kr_heads = add(current_graph().zeros(Shape{B, T, H, rope_dim_}), kr);
    k = reshape(concat({kr_heads, reshape(k, Shape{B, T, H, head_dim_})}, 3),
                Shape{B, T, H * (rope_dim_ + head_dim_)});
  }
  AttentionOptions o;
  o.scale = scale_;
  o.causal = true;
  o.v_head_dim = head_dim_;
  return o_proj_->forward(attention(q, k, v, H, H, o));
}

Tensor MLA::forward_cached(const Tensor& x, MLACacheState& st) {
  const int64_t B = x.dim(0), T = x.dim(1), H = n_heads_, offset = st.length;
  const int64_t len = offset + T;
  op_check(B == st.batch, "mla",
           "batch " + std::to_string(B) + " != cache batch " + std::to_string(st.batch));
  op_check(len <= st.max_len, "mla",
           "cache full: " + std::to_string(len) + " > " + std::to_string(st.max_len));
  // Cache the new positions: [k_rope | c_kv].
  Tensor c = rms_norm(kv_down_->forward(x), kv_norm_->tensor(), eps_);
  cache_append_rows(st.rows.data(), st.max_len, st.width, c, offset, rope_dim_);
  if (rope_dim_ > 0)
    cache_append_rows(st.rows.data(), st.max_len, st.width, rope_key(x, offset), offset);
  st.length = len;
  Tensor keys = cache_prefix(st.rows.data(), B, st.max_len, st.width, len);
  Tensor latent = cache_prefix(st.rows.data(), B, st.max_len, st.width, len, rope_dim_, kv_rank_);

  // Absorbed queries [q_rope_h | q_nope_h W_uk_h] (rope_dim + kv_lora_rank): one
  // shared key head [k_rope | c_kv] (MQA over the latent).
  Tensor q = reshape(queries(x, offset), Shape{B * T, H, rope_dim_ + head_dim_});
  Tensor q_nope = rope_dim_ > 0 ? slice(q, 2, rope_dim_, rope_dim_ + head_dim_) : q;
  Tensor w_uk = reshape(k_up_->weight->tensor(), Shape{H, head_dim_, kv_rank_});
  Tensor q_lat = transpose(matmul(transpose(q_nope, 0, 1), w_uk), 0, 1);  // (BT, H, r)
  Tensor qa = rope_dim_ > 0 ? concat({slice(q, 2, 0, rope_dim_), q_lat}, 2) : q_lat;
  qa = reshape(qa, Shape{B, T, H * (rope_dim_ + kv_rank_)});
  AttentionOptions o;
  o.scale = scale_;
  o.causal = true;
  o.q_offset = offset;
  o.v_head_dim = kv_rank_;
  Tensor y = attention(qa, keys, latent, H, 1, o);  // (B, T, H * r): attended latents
  // Per head W_uv_h (head_dim x r) maps the attended latent to the value space.
  Tensor w_uv = reshape(v_up_->weight->tensor(), Shape{H, head_dim_, kv_rank_});
  Tensor yh = matmul(transpose(reshape(y, Shape{B * T, H, kv_rank_}), 0, 1), w_uv, true);
  return o_proj_->forward(reshape(transpose(yh, 0, 1), Shape{B, T, H * head_dim_}));
}

std::unique_ptr<LayerState> MLA::make_state(int64_t batch, int64_t max_len) const {
  auto s = std::make_unique<MLACacheState>();
  s->batch = batch;
  s->max_len = max_len;
  s->width = rope_dim_ + kv_rank_;
  s->rows.resize(batch * max_len * s->width);
  return s;
}

double MLA::mixing_flops_per_token(int64_t seq_len) const {
  // Scores over head_dim + rope_dim, weighted sum over head_dim (the full pass;
  // absorbed decoding instead works in the kv_lora_rank latent).
  return 2.0 * double(n_heads_) * double(seq_len) * double(2 * head_dim_ + rope_dim_);
}

}  // namespace bl
