#include "core/attention/mamba3.h"

#include <algorithm>
#include <cstring>

#include "core/config.h"
#include "ops/check.h"
#include "ops/elementwise.h"
#include "ops/norm.h"
#include "ops/shape_ops.h"
#include "tensor/graph.h"

namespace bl {

Mamba3::Mamba3(const BlockConfig& c)
    : Mamba2(c, c.mamba_complex_a ? c.ssm_state_size / 2 : 0),
      trapezoidal_(c.mamba_trapezoidal),
      bc_norm_(c.mamba_bc_norm),
      complex_a_(c.mamba_complex_a) {
  op_check(!complex_a_ || N_ % 2 == 0, "mamba3", "mamba_complex_a needs an even ssm_state_size");
  if (bc_norm_) {
    b_norm_ = add_parameter("b_norm.weight", Shape{N_}, Init::kOnes);
    c_norm_ = add_parameter("c_norm.weight", Shape{N_}, Init::kOnes);
  }
}

namespace {
// RMSNorm over each group's N channels of (Bt, T, G*N).
Tensor group_rms_norm(const Tensor& v, Parameter* w, int64_t n, float eps) {
  return reshape(rms_norm(reshape(v, Shape{v.numel() / n, n}), w->tensor(), eps), v.shape());
}

// v shifted one step later along T: row t holds v[t-1]; row 0 holds `first`
// (Bt, width) from the decoding state, or zeros.
Tensor shift_in(const Tensor& v, const float* first) {
  Graph& g = current_graph();
  const int64_t Bt = v.dim(0), T = v.dim(1), W = v.dim(2);
  Tensor head = g.empty(Shape{Bt, 1, W});
  if (first)
    std::memcpy(head.data(), first, sizeof(float) * size_t(Bt * W));
  else
    std::memset(head.data(), 0, sizeof(float) * size_t(Bt * W));
  if (T == 1) return head;
  return concat({head, slice(v, 1, 0, T - 1)}, 1);
}

// dst (Bt, width) = the last row along T of v (Bt, T, width).
void store_last(const Tensor& v, float* dst) {
  const int64_t Bt = v.dim(0), T = v.dim(1), W = v.dim(2);
  for (int64_t b = 0; b < Bt; ++b)
    std::memcpy(dst + b * W, v.data() + (b * T + T - 1) * W, sizeof(float) * size_t(W));
}
}  // namespace

Tensor Mamba3::mix(const Tensor& x, const Tensor& B, const Tensor& C, const SsmDiscretization& disc,
                   const Tensor& proj, MambaState* st) {
  Tensor Bm = B, Cm = C;
  if (bc_norm_) {
    Bm = group_rms_norm(Bm, b_norm_, N_, eps_);
    Cm = group_rms_norm(Cm, c_norm_, N_, eps_);
  }
  if (complex_a_) {
    Tensor theta = slice(proj, 2, proj_dim_ - N_ / 2, proj_dim_);
    RotatedBC r = ssm_bc_rotary(Bm, Cm, theta, disc.dt, H_, G_, st ? st->phase.data() : nullptr);
    Bm = r.B;
    Cm = r.C;
  }
  const int64_t gb = bc_groups();
  float* S = st ? st->ssm.data() : nullptr;
  if (!trapezoidal_) return scan(x, disc.dt, disc.log_decay, Bm, Cm, D_->tensor(), gb, S);

  // Two SSD calls sharing the decay; by linearity the state is the sum of theirs.
  Tensor y = scan(x, scale(disc.dt, 0.5f), disc.log_decay, Bm, Cm, D_->tensor(), gb, S);
  Tensor x_prev = shift_in(x, st ? st->x_prev.data() : nullptr);
  Tensor b_prev = shift_in(Bm, st ? st->b_prev.data() : nullptr);
  float* S2 = nullptr;
  if (st) {
    S2 = current_graph().alloc(st->ssm.size());
    std::memset(S2, 0, sizeof(float) * size_t(st->ssm.size()));
  }
  Tensor y2 = scan(x_prev, disc.w_prev, disc.log_decay, b_prev, Cm, Tensor(), gb, S2);
  if (st) {
    for (int64_t i = 0; i < st->ssm.size(); ++i) S[i] += S2[i];
    store_last(x, st->x_prev.data());
    store_last(Bm, st->b_prev.data());
  }
  return add(y, y2);
}

std::unique_ptr<LayerState> Mamba3::make_state(int64_t batch, int64_t max_len) const {
  auto s = Mamba2::make_state(batch, max_len);
  auto* m = static_cast<MambaState*>(s.get());
  if (trapezoidal_) {
    m->x_prev.resize(batch * inner_);
    m->b_prev.resize(batch * bc_groups() * N_);
  }
  if (complex_a_) m->phase.resize(batch * H_ * (N_ / 2));
  return s;
}

double Mamba3::mixing_flops_per_token(int64_t seq_len) const {
  return (trapezoidal_ ? 2.0 : 1.0) * scan_flops_per_token(bc_groups(), seq_len);
}

}  // namespace bl
