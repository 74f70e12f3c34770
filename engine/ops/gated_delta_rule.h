// Gated delta rule (Yang, Kautz, Hatamizadeh 2024, "Gated Delta Networks"):
// per head a state S (head_dim x head_dim) with
//   S_t = alpha_t S_{t-1} (I - beta_t k_t k_tᵀ) + beta_t v_t k_tᵀ,   o_t = scale * S_t q_t,
// alpha_t = exp(g_t). Two forms that compute the same outputs:
// - gated_delta_rule: chunkwise-parallel (WY / UT form) with a fused backward,
//   for training and full forward passes;
// - gated_delta_rule_recurrent: token by token on a persistent state, for decoding.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// q, k, v (B, T, H*D); g (B, T, H) log decays (alpha = exp(g), normally <= 0);
/// beta (B, T, H) update strengths. Starts from a zero state -> o (B, T, H*D).
/// Chunks of `chunk` positions (the last may be shorter): inside a chunk the
/// delta-rule interactions are a unit lower-triangular system solved once,
/// across chunks only the (D x D) state is carried. Backward recomputes each
/// chunk from the state saved at its start (B * H * n_chunks * D * D floats).
Tensor gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                        const Tensor& beta, int64_t n_heads, float scale, int64_t chunk);

/// Same inputs; runs the recurrence token by token starting from and updating
/// `state` (B, H, D, D floats, element [b][h][i][j] = S_{j,i}, i.e. Sᵀ: key
/// index i, value index j). Decoding only: records no backward and throws if
/// an input requires a gradient while grad mode is on.
Tensor gated_delta_rule_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& g, const Tensor& beta, int64_t n_heads, float scale,
                                  float* state);

/// Mamba-2 style log decay: g = -exp(A_log[h]) * softplus(a + dt_bias[h]).
/// a (..., H); A_log, dt_bias (H) -> g (..., H), with backward to all three.
Tensor gated_delta_decay(const Tensor& a, const Tensor& a_log, const Tensor& dt_bias);

}  // namespace bl
