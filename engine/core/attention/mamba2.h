// Mamba-2 (Dao & Gu 2024, "Transformers are SSMs"): the SSD token mixer.
//   [z, x, B, C, dt] = in_proj(u)                 (no bias, like the reference)
//   [x, B, C] = silu(causal depthwise conv1d([x, B, C]))   (conv_kernel_size taps)
//   dt = softplus(dt + dt_bias), A = -exp(A_log)  (per head)
//   y = SSD(x, dt, A, B, C) + D x                 (ops/ssd.h; B, C shared per group)
//   out = out_proj(rmsnorm_group(y * silu(z)))     (norm groups = mamba_n_groups)
// Sizes: inner = mamba_expand * d_model, H = mamba_n_heads (unset: n_heads),
// P = mamba_head_dim (unset: inner / H), N = ssm_state_size, G = mamba_n_groups.
// Training runs the chunked SSD scan (mamba_chunk_size); decoding runs the
// recurrence on a (H, P, N) state per sequence plus the conv's last K-1 inputs.
#pragma once

#include "core/components.h"
#include "core/linear.h"
#include "ops/ssm_ops.h"
#include "tensor/parameter.h"

namespace bl {

/// Recurrent decoding state of mamba2 / mamba3.
struct MambaState : CloneableState<MambaState> {
  Buffer ssm;     // (batch, H, P, N)
  Buffer conv;    // (batch, K-1, conv channels): the last K-1 conv inputs
  Buffer x_prev;  // mamba3 trapezoidal: (batch, inner) last SSM input
  Buffer b_prev;  // mamba3 trapezoidal: (batch, width of B) last (normed, rotated) B
  Buffer phase;   // mamba3 complex A: (batch, H, N/2) cumulative rotation angles

 protected:
  std::vector<Buffer*> batch_buffers() override { return {&ssm, &conv, &x_prev, &b_prev, &phase}; }
};

class Mamba2 : public Attention {
 public:
  explicit Mamba2(const BlockConfig& c);
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  double mixing_flops_per_token(int64_t seq_len) const override;
  void init_custom(Rng& rng) override;

 protected:
  /// extra_proj: additional in_proj outputs after dt (mamba3's rotation angles).
  Mamba2(const BlockConfig& c, int64_t extra_proj);

  /// The SSM part: x (Bt, T, inner) -> y (Bt, T, inner), B and C (Bt, T, G*N)
  /// after the conv. proj is the whole in_proj output (for extra columns).
  virtual Tensor mix(const Tensor& x, const Tensor& B, const Tensor& C,
                     const SsmDiscretization& disc, const Tensor& proj, MambaState* st);
  virtual bool trapezoidal() const { return false; }
  /// One SSD pass: chunked without a state (training), recurrent with one.
  Tensor scan(const Tensor& x, const Tensor& w, const Tensor& log_decay, const Tensor& B,
              const Tensor& C, const Tensor& D, int64_t groups, float* state) const;
  /// Forward FLOPs per token of one chunked SSD scan over seq_len tokens with
  /// `groups` B/C groups (the GEMMs the scan runs, full q x q chunk products).
  double scan_flops_per_token(int64_t groups, int64_t seq_len) const;

  int64_t d_model_, inner_, H_, P_, N_, G_, K_, chunk_, conv_dim_, proj_dim_;
  float eps_;
  Linear *in_proj_, *out_proj_;
  Parameter *conv_w_, *conv_b_, *dt_bias_, *A_log_, *D_, *norm_w_;
};

}  // namespace bl
