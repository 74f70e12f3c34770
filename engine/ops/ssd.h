// Mamba-2 state-space duality (SSD, Dao & Gu 2024): the selective scan with a
// scalar decay per head. Per batch row b and head h (P = head dim, N = state
// size, group g = h / (H / G) supplies B and C):
//   S_t = exp(a_t) S_{t-1} + w_t x_t B_tᵀ     S (P x N), S_{-1} = 0 (or a given state)
//   y_t = S_t C_t + D_h x_t
// a_t = log decay (dt * A <= 0), w_t = input weight (dt). Layouts are what linear
// layers produce: x (Bt, T, H*P), a and w (Bt, T, H), B and C (Bt, T, G*N).
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

struct SsdShape {
  int64_t n_heads = 1;
  int64_t n_groups = 1;
  int64_t chunk_size = 64;  // ssd_chunked only
};

/// Training form: chunks of chunk_size tokens. Inside a chunk the quadratic
/// (attention-like) form (L o C Bᵀ) (w x) by GEMMs; across chunks the P x N
/// state is passed on. No per-token loop. D may be undefined (no skip term).
/// Hand-written backward for x, w, a, B, C, D.
Tensor ssd_chunked(const Tensor& x, const Tensor& w, const Tensor& log_decay, const Tensor& B,
                   const Tensor& C, const Tensor& D, const SsdShape& s);

/// Decoding form: the recurrence token by token. state (Bt, H, P, N) holds
/// S_{-1} on entry and S_{T-1} on exit (null = zeros, not written back).
/// Forward only: throws if a gradient would be needed.
Tensor ssd_recurrent(const Tensor& x, const Tensor& w, const Tensor& log_decay, const Tensor& B,
                     const Tensor& C, const Tensor& D, const SsdShape& s, float* state);

}  // namespace bl
