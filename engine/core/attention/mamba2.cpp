#include "core/attention/mamba2.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "ops/check.h"
#include "ops/shape_ops.h"
#include "ops/ssd.h"
#include "tensor/graph.h"

namespace bl {

Mamba2::Mamba2(const BlockConfig& c) : Mamba2(c, 0) {}

Mamba2::Mamba2(const BlockConfig& c, int64_t extra_proj)
    : d_model_(c.d_model),
      inner_(c.mamba_expand * c.d_model),
      H_(c.mamba_n_heads ? *c.mamba_n_heads : c.n_heads),
      N_(c.ssm_state_size),
      G_(c.mamba_n_groups),
      K_(c.conv_kernel_size),
      chunk_(c.mamba_chunk_size),
      eps_(float(c.norm_eps)) {
  P_ = c.mamba_head_dim ? *c.mamba_head_dim : inner_ / H_;
  op_check(H_ * P_ == inner_ && H_ % G_ == 0, "mamba2",
           "heads * head_dim must equal mamba_expand * d_model and groups divide heads");
  conv_dim_ = inner_ + 2 * G_ * N_;
  proj_dim_ = inner_ + conv_dim_ + H_ + extra_proj;
  in_proj_ = add_module("in_proj", std::make_unique<Linear>(d_model_, proj_dim_, false));
  conv_w_ = add_parameter("conv1d.weight", Shape{conv_dim_, K_}, Init::kCustom);
  conv_b_ = add_parameter("conv1d.bias", Shape{conv_dim_}, Init::kCustom);
  dt_bias_ = add_parameter("dt_bias", Shape{H_}, Init::kCustom);
  A_log_ = add_parameter("A_log", Shape{H_}, Init::kCustom);
  D_ = add_parameter("D", Shape{H_}, Init::kOnes);
  norm_w_ = add_parameter("norm.weight", Shape{inner_}, Init::kOnes);
  out_proj_ = add_module("out_proj",
                         std::make_unique<Linear>(inner_, d_model_, false, Init::kResidualNormal));
}

void Mamba2::init_custom(Rng& rng) {
  // Conv: PyTorch Conv1d default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = K (depthwise).
  const double bound = 1.0 / std::sqrt(double(K_));
  for (Parameter* p : {conv_w_, conv_b_})
    for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] = float((2 * rng.uniform() - 1) * bound);
  for (int64_t h = 0; h < H_; ++h) {
    // dt log-uniform in [1e-3, 1e-1] (floored at 1e-4); dt_bias = softplus^-1(dt).
    double dt = std::exp(rng.uniform() * (std::log(0.1) - std::log(0.001)) + std::log(0.001));
    dt = std::max(dt, 1e-4);
    dt_bias_->data()[h] = float(dt + std::log(-std::expm1(-dt)));
    // A ~ U[1, 16], stored as log A.
    A_log_->data()[h] = float(std::log(1.0 + 15.0 * rng.uniform()));
  }
}

Tensor Mamba2::scan(const Tensor& x, const Tensor& w, const Tensor& log_decay, const Tensor& B,
                    const Tensor& C, const Tensor& D, int64_t groups, float* state) const {
  SsdShape s{H_, groups, chunk_};
  return state ? ssd_recurrent(x, w, log_decay, B, C, D, s, state)
               : ssd_chunked(x, w, log_decay, B, C, D, s);
}

Tensor Mamba2::mix(const Tensor& x, const Tensor& B, const Tensor& C, const SsmDiscretization& disc,
                   const Tensor& proj, MambaState* st) {
  return scan(x, disc.dt, disc.log_decay, B, C, D_->tensor(), G_, st ? st->ssm.data() : nullptr);
}

Tensor Mamba2::forward(const Tensor& u, PositionEncoding&, LayerState* state) {
  MambaState* st = nullptr;
  if (state) {
    st = dynamic_cast<MambaState*>(state);
    op_check(st != nullptr, "mamba2", "decoding state of another component");
    op_check(st->batch == u.dim(0), "mamba2", "decoding state batch size differs from the input");
  }
  Tensor proj = in_proj_->forward(u);
  Tensor z = slice(proj, 2, 0, inner_);
  Tensor xbc = slice(proj, 2, inner_, inner_ + conv_dim_);
  Tensor dt_raw = slice(proj, 2, inner_ + conv_dim_, inner_ + conv_dim_ + H_);
  xbc = ssm_causal_conv_silu(xbc, conv_w_->tensor(), conv_b_->tensor(),
                             st ? st->conv.data() : nullptr);
  Tensor x = slice(xbc, 2, 0, inner_);
  Tensor B = slice(xbc, 2, inner_, inner_ + G_ * N_);
  Tensor C = slice(xbc, 2, inner_ + G_ * N_, conv_dim_);
  SsmDiscretization disc =
      ssm_discretize(dt_raw, dt_bias_->tensor(), A_log_->tensor(), trapezoidal());
  Tensor y = mix(x, B, C, disc, proj, st);
  if (st) st->length += u.dim(1);
  return out_proj_->forward(ssm_gated_rms_norm(y, z, norm_w_->tensor(), inner_ / G_, eps_));
}

std::unique_ptr<LayerState> Mamba2::make_state(int64_t batch, int64_t) const {
  auto s = std::make_unique<MambaState>();
  s->batch = batch;
  s->ssm.resize(batch * H_ * P_ * N_);
  s->conv.resize(batch * (K_ - 1) * conv_dim_);
  return s;
}

double Mamba2::scan_flops_per_token(int64_t groups, int64_t seq_len) const {
  // Per chunk of q tokens: C Bᵀ (2 q^2 N per group) and (L o C Bᵀ) X (2 q^2 P per
  // head); every chunk but the first reads the incoming state out (C Sᵀ, 2 q P N
  // per head) and every chunk but the last passes it on (Xᵀ B, 2 q P N per head).
  const int64_t T = std::max<int64_t>(1, seq_len), Q = std::min(chunk_, T);
  const int64_t nc = (T + Q - 1) / Q;
  double total = 0;
  for (int64_t c = 0; c < nc; ++c) {
    const double q = double(std::min(Q, T - c * Q));
    total += 2.0 * q * q * double(N_ * groups + P_ * H_);
    total += 2.0 * q * double(P_ * N_ * H_) * ((c > 0) + (c + 1 < nc));
  }
  return total / double(T);
}

double Mamba2::mixing_flops_per_token(int64_t seq_len) const {
  return scan_flops_per_token(G_, seq_len);
}

}  // namespace bl
