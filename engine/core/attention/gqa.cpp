#include "core/attention/gqa.h"

#include <cmath>
#include <cstring>

#include "core/config.h"
#include "ops/check.h"
#include "ops/norm.h"
#include "ops/shape_ops.h"
#include "tensor/graph.h"

namespace bl {

GQA::GQA(const BlockConfig& c) : GQA(c, c.effective_n_kv_heads()) {}

GQA::GQA(const BlockConfig& c, int64_t n_kv_heads)
    : d_model_(c.d_model),
      n_heads_(c.n_heads),
      n_kv_heads_(n_kv_heads),
      head_dim_(c.head_dim()),
      norm_eps_(float(c.norm_eps)) {
  scale_ = c.mup ? 1.0f / float(head_dim_) : 1.0f / std::sqrt(float(head_dim_));
  const bool qkv_bias = c.bias || c.qkv_bias;
  q_proj_ =
      add_module("q_proj", std::make_unique<Linear>(d_model_, n_heads_ * head_dim_, qkv_bias));
  k_proj_ =
      add_module("k_proj", std::make_unique<Linear>(d_model_, n_kv_heads_ * head_dim_, qkv_bias));
  v_proj_ =
      add_module("v_proj", std::make_unique<Linear>(d_model_, n_kv_heads_ * head_dim_, qkv_bias));
  o_proj_ = add_module("o_proj", std::make_unique<Linear>(n_heads_ * head_dim_, d_model_, c.bias,
                                                          Init::kResidualNormal));
  if (c.qk_norm) {
    q_norm_ = add_parameter("q_norm.weight", Shape{head_dim_}, Init::kOnes);
    k_norm_ = add_parameter("k_norm.weight", Shape{head_dim_}, Init::kOnes);
  }
}

AttentionOptions GQA::options(PositionEncoding& pos) const {
  AttentionOptions o;
  o.scale = scale_;
  o.causal = true;
  o.alibi_slopes = pos.alibi_slopes();
  return o;
}

namespace {
// Per-head RMSNorm: view (..., H*D) as (..., H, D) and normalise each head vector.
Tensor head_rms_norm(const Tensor& x, Parameter* w, int64_t n_heads, float eps) {
  Shape s = x.shape();
  Shape heads{x.rows() * n_heads, x.cols() / n_heads};
  return reshape(rms_norm(reshape(x, heads), w->tensor(), eps), s);
}

// Appends rows of src (B, T, W) at position `at` of cache (B, max_len, W).
void append_rows(float* cache, const Tensor& src, int64_t max_len, int64_t at) {
  const int64_t B = src.dim(0), T = src.dim(1), W = src.dim(2);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(cache + (b * max_len + at) * W, src.data() + b * T * W, sizeof(float) * T * W);
}

// Contiguous copy of the first `len` cached rows: (B, len, W).
Tensor cached_prefix(const float* cache, int64_t B, int64_t max_len, int64_t W, int64_t len) {
  Tensor t = current_graph().empty(Shape{B, len, W});
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(t.data() + b * len * W, cache + b * max_len * W, sizeof(float) * len * W);
  return t;
}
}  // namespace

Tensor GQA::forward(const Tensor& x, PositionEncoding& pos, LayerState* state) {
  return o_proj_->forward(mix(x, pos, state));
}

Tensor GQA::forward_add(const Tensor& x, PositionEncoding& pos, LayerState* state,
                        const Tensor& residual) {
  return o_proj_->forward(mix(x, pos, state), residual);
}

Tensor GQA::mix(const Tensor& x, PositionEncoding& pos, LayerState* state) {
  const int64_t offset = state ? state->length : 0;
  auto [q, k, v] = Linear::forward_qkv(*q_proj_, *k_proj_, *v_proj_, x);  // fused QKV LoRA
  if (q_norm_) {
    q = head_rms_norm(q, q_norm_, n_heads_, norm_eps_);
    k = head_rms_norm(k, k_norm_, n_kv_heads_, norm_eps_);
  }
  q = pos.rotate(q, n_heads_, offset);
  k = pos.rotate(k, n_kv_heads_, offset);
  AttentionOptions opt = options(pos);
  if (!state) return attention(q, k, v, n_heads_, n_kv_heads_, opt);
  return attend_cached(q, k, v, opt, *state);
}

Tensor GQA::attend_cached(const Tensor& q, const Tensor& k, const Tensor& v, AttentionOptions opt,
                          LayerState& state) {
  auto* kv = dynamic_cast<KVCacheState*>(&state);
  op_check(kv != nullptr && kv->width == n_kv_heads_ * head_dim_, "gqa",
           "decoding state of another component");
  const int64_t offset = kv->length, T = q.dim(1);
  op_check(q.dim(0) == kv->batch, "gqa",
           "batch " + std::to_string(q.dim(0)) + " but the KV cache holds " +
               std::to_string(kv->batch) + " sequences");
  op_check(offset + T <= kv->max_len, "gqa",
           "KV cache full: " + std::to_string(offset + T) + " > " + std::to_string(kv->max_len));
  append_rows(kv->k.data(), k, kv->max_len, offset);
  append_rows(kv->v.data(), v, kv->max_len, offset);
  const int64_t len = offset + T;
  Tensor kc = cached_prefix(kv->k.data(), kv->batch, kv->max_len, kv->width, len);
  Tensor vc = cached_prefix(kv->v.data(), kv->batch, kv->max_len, kv->width, len);
  opt.q_offset = offset;
  Tensor y = attention(q, kc, vc, n_heads_, n_kv_heads_, opt);
  kv->length = len;
  return y;
}

std::unique_ptr<LayerState> GQA::make_state(int64_t batch, int64_t max_len) const {
  auto s = std::make_unique<KVCacheState>();
  s->batch = batch;
  s->max_len = max_len;
  s->width = n_kv_heads_ * head_dim_;
  s->k.resize(batch * max_len * s->width);
  s->v.resize(batch * max_len * s->width);
  return s;
}

double GQA::mixing_flops_per_token(int64_t seq_len) const {
  // Q Kᵀ and P V: 2 * 2 * n_heads * head_dim * seq_len multiply-adds per token (full T x T).
  return 4.0 * double(n_heads_ * head_dim_) * double(seq_len);
}

}  // namespace bl
