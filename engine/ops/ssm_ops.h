// Fused pointwise / short-range ops around the Mamba SSD scan, each with a
// hand-written backward. Decoding variants carry their history in caller-owned
// buffers (`tail`, `phase`): in on entry, updated on exit.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// Depthwise causal conv1d + SiLU: y[t,c] = silu(b[c] + sum_k w[c,k] x[t-K+1+k, c]).
/// x (Bt, T, Cd), w (Cd, K), b (Cd). Positions before 0 read `tail`
/// (Bt, K-1, Cd) when given (decoding; rewritten with the last K-1 inputs), else zeros.
Tensor ssm_causal_conv_silu(const Tensor& x, const Tensor& w, const Tensor& b, float* tail);

/// Mamba discretisation from the dt projection (all (Bt, T, H) but the (H) params):
///   dt = softplus(dt_raw + dt_bias), log_decay = -exp(A_log) * dt,
///   w_prev = dt / 2 * exp(log_decay)   (only when trapezoidal; the weight of the
///   previous input in the trapezoid rule).
struct SsmDiscretization {
  Tensor dt, log_decay, w_prev;
};
SsmDiscretization ssm_discretize(const Tensor& dt_raw, const Tensor& dt_bias, const Tensor& A_log,
                                 bool trapezoidal);

/// Gated RMSNorm (Mamba-2 RMSNormGated, norm after gate): u = y * silu(z), then
/// each group of group_size channels is scaled by 1/rms(group), times weight (D).
Tensor ssm_gated_rms_norm(const Tensor& y, const Tensor& z, const Tensor& weight,
                          int64_t group_size, float eps);

/// Data-dependent rotation of B and C (Mamba-3 complex A as RoPE on B, C):
///   phi_t[h,k] = phi_{-1}[h,k] + sum_{s<=t} dt_s[h] * theta_s[k]    (k < N/2)
/// and for each head h of group g, pairs (k, k + N/2) of B_t[g] and C_t[g] are
/// rotated by phi_t[h,k]. B, C (Bt, T, G*N), theta (Bt, T, N/2), dt (Bt, T, H)
/// -> per-head B', C' (Bt, T, H*N). phase (Bt, H, N/2): phi_{-1} when given
/// (decoding; rewritten with phi_{T-1}), else zeros.
struct RotatedBC {
  Tensor B, C;
};
RotatedBC ssm_bc_rotary(const Tensor& B, const Tensor& C, const Tensor& theta, const Tensor& dt,
                        int64_t n_heads, int64_t n_groups, float* phase);

}  // namespace bl
