#include "core/attention/sparse_gqa.h"

#include <algorithm>
#include <stdexcept>

#include "core/attention/cache_rows.h"
#include "core/config.h"
#include "ops/check.h"
#include "ops/elementwise.h"
#include "ops/norm.h"
#include "ops/shape_ops.h"
#include "ops/sparse_attention.h"
#include "tensor/graph.h"

namespace bl {

namespace {
int64_t required(const std::optional<int64_t>& v, const char* field) {
  if (!v || *v <= 0)
    throw std::invalid_argument(std::string("[sparse_gqa] ") + field + " must be set and > 0");
  return *v;
}

// Per-head RMSNorm of (..., H*D) (qk_norm), as in GQA.
Tensor head_rms_norm(const Tensor& x, Parameter* w, int64_t n_heads, float eps) {
  Shape s = x.shape();
  return reshape(
      rms_norm(reshape(x, Shape{x.rows() * n_heads, x.cols() / n_heads}), w->tensor(), eps), s);
}
}  // namespace

SparseGQA::SparseGQA(const BlockConfig& c)
    : GQA(c, c.effective_n_kv_heads()),
      ratio_(required(c.sparse_compress_ratio, "sparse_compress_ratio")),
      select_k_(required(c.sparse_select_k, "sparse_select_k")),
      window_(c.window_size ? *c.window_size : ratio_) {}

Tensor SparseGQA::forward(const Tensor& x, PositionEncoding& pos, LayerState* state) {
  const int64_t offset = state ? state->length : 0;
  const int64_t B = x.dim(0), T = x.dim(1);
  Tensor q = q_proj_->forward(x);
  Tensor k = k_proj_->forward(x);
  Tensor v = v_proj_->forward(x);
  if (q_norm_) {
    q = head_rms_norm(q, q_norm_, n_heads_, norm_eps_);
    k = head_rms_norm(k, k_norm_, n_kv_heads_, norm_eps_);
  }
  q = pos.rotate(q, n_heads_, offset);
  k = pos.rotate(k, n_kv_heads_, offset);
  if (state) {  // keys and values of every position so far (constants)
    auto* kv = dynamic_cast<KVCacheState*>(state);
    op_check(kv != nullptr, "sparse_gqa", "decoding state of another component");
    const int64_t len = offset + T;
    op_check(B == kv->batch && len <= kv->max_len, "sparse_gqa",
             "KV cache too small: " + std::to_string(len) + " > " + std::to_string(kv->max_len));
    cache_append_rows(kv->k.data(), kv->max_len, kv->width, k, offset);
    cache_append_rows(kv->v.data(), kv->max_len, kv->width, v, offset);
    kv->length = len;
    k = cache_prefix(kv->k.data(), B, kv->max_len, kv->width, len);
    v = cache_prefix(kv->v.data(), B, kv->max_len, kv->width, len);
  }
  // (a) compressed blocks; also picks the blocks for (b).
  int32_t* sel = current_graph().alloc_as<int32_t>(B * T * n_kv_heads_ * select_k_);
  Tensor y = compressed_attention(q, block_mean_pool(k, ratio_), block_mean_pool(v, ratio_),
                                  n_heads_, n_kv_heads_, scale_, ratio_, offset, select_k_, sel);
  // (b) selected blocks, token by token.
  y = add(y, selected_attention(q, k, v, n_heads_, n_kv_heads_, scale_, ratio_, sel, select_k_));
  // (c) sliding window.
  AttentionOptions o = options(pos);
  o.window = window_;
  o.q_offset = offset;
  y = add(y, attention(q, k, v, n_heads_, n_kv_heads_, o));
  return o_proj_->forward(y);
}

double SparseGQA::mixing_flops_per_token(int64_t seq_len) const {
  // Per token at context seq_len (like GQA: every key of the context counted):
  // Q Kᵀ and P V over the seq_len / ratio compressed blocks (computed for all of
  // them), the tokens of min(select_k, blocks) selected blocks, and the window;
  // plus summing the group's probabilities to rank blocks and mean-pooling K and
  // V (one add per element and one scale per block element).
  const double qd = double(n_heads_ * head_dim_);
  const int64_t blocks = seq_len / ratio_;
  const double selected = double(std::min(select_k_, blocks) * ratio_);
  const double window = double(std::min(window_, seq_len));
  return 4.0 * qd * (double(blocks) + selected + window) + double(n_heads_ * blocks) +
         2.0 * double(n_kv_heads_ * head_dim_) * (1.0 + 1.0 / double(ratio_));
}

}  // namespace bl
