// Mamba-3 (Lahoti, Gu, Dao et al. 2025) on top of Mamba2: in_proj, conv, dt/A/D,
// gated norm and out_proj are Mamba2's; three flags change the SSM part.
// Per head h with decay alpha_t = exp(dt_t A), state S (P x N):
//  - mamba_bc_norm: B_t, C_t <- RMSNorm(B_t), RMSNorm(C_t) per group over N
//    (weights b_norm, c_norm of size N, shared by groups; like QK-norm).
//  - mamba_complex_a: complex eigenvalues alpha_t e^{i theta_t dt_t} as a
//    data-dependent RoPE on B and C. theta_t = W_theta u_t (N/2 extra in_proj
//    outputs), cumulative angle phi_t[h,k] = sum_{s<=t} dt_s[h] theta_s[k], and
//    pairs (k, k+N/2) of B_t, C_t are rotated by phi_t[h,k] (B, C become per head):
//    rotating state S_t = P_tᵀ S'_t by the running product P_t of the per-step
//    rotations turns S'_t = alpha_t R_t S'_{t-1} + ... into Mamba-2's real recurrence.
//  - mamba_trapezoidal: the generalised trapezoid rule with lambda = 1/2,
//      S_t = alpha_t S_{t-1} + dt_t/2 x_t B_tᵀ + dt_t/2 alpha_t x_{t-1} B_{t-1}ᵀ,
//    computed as two SSD calls sharing the decay (one on (x_t, B_t) with weight
//    dt/2 and the D skip, one on the shifted (x_{t-1}, B_{t-1}) with weight
//    dt/2 alpha_t, x_{-1} = B_{-1} = 0); y_t = C_t S_t + D x_t. B_{t-1} is the
//    normed and rotated B, so both flags combine exactly.
// Decoding keeps x_{t-1}, B_{t-1} and phi in the state next to Mamba-2's.
#pragma once

#include "core/attention/mamba2.h"

namespace bl {

class Mamba3 : public Mamba2 {
 public:
  explicit Mamba3(const BlockConfig& c);
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  double mixing_flops_per_token(int64_t seq_len) const override;

 protected:
  Tensor mix(const Tensor& x, const Tensor& B, const Tensor& C, const SsmDiscretization& disc,
             const Tensor& proj, MambaState* st) override;
  bool trapezoidal() const override { return trapezoidal_; }

 private:
  int64_t bc_groups() const { return complex_a_ ? H_ : G_; }
  bool trapezoidal_, bc_norm_, complex_a_;
  Parameter *b_norm_ = nullptr, *c_norm_ = nullptr;  // (N) when bc_norm
};

}  // namespace bl
