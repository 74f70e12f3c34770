// Fused scaled-dot-product attention: scores, mask/bias, softmax and the
// weighted sum in one op, with its backward. Works on the (B, T, H*D) layout
// that linear layers produce, so no head transposes are ever materialised.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

struct AttentionOptions {
  float scale = 1.0f;     // usually 1/sqrt(head_dim) (μP: 1/head_dim)
  bool causal = true;     // key position <= query position
  int64_t window = 0;     // > 0: only keys with q_pos - k_pos < window (sliding window)
  int64_t chunk = 0;      // > 0: only keys in the same chunk, floor(pos / chunk) (Llama 4)
  const float* alibi_slopes = nullptr;  // (n_heads): score += -slope * (q_pos - k_pos)
  int64_t q_offset = 0;   // absolute position of query row 0 (incremental decoding)
  int64_t k_offset = 0;   // absolute position of key row 0 (a cache that dropped old keys)
  // > 0: v has heads of this size instead of q/k's head_dim (MLA).
  int64_t v_head_dim = 0;
};

/// q (B, Tq, Hq*D), k and v (B, Tk, Hkv*D), Hq % Hkv == 0 (GQA; Hkv == 1 is MQA)
/// -> (B, Tq, Hq*D). Query head h reads key/value head h / (Hq / Hkv).
/// With opt.v_head_dim = Dv > 0: v (B, Tk, Hkv*Dv) -> (B, Tq, Hq*Dv).
/// Rows whose every key is masked produce zeros (and zero gradients).
/// With a gradient, only the row logsumexps (B * Hq * Tq floats) are kept for
/// backward, which recomputes the probabilities block by block.
/// k_offset <= q_offset is typical; masks use absolute positions (q_offset + i,
/// k_offset + j), so a decoding step is Tq = 1, q_offset = number of past tokens.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t n_heads,
                 int64_t n_kv_heads, const AttentionOptions& opt);

}  // namespace bl
