#include "core/attention/gated_deltanet.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "ops/activation.h"
#include "ops/causal_conv1d.h"
#include "ops/check.h"
#include "ops/elementwise.h"
#include "ops/gated_delta_rule.h"
#include "ops/norm.h"
#include "ops/shape_ops.h"
#include "tensor/graph.h"

namespace bl {

namespace {

constexpr float kL2Eps = 1e-6f;  // l2 norm x / sqrt(Σx² + eps), as lmxlab and FLA

// Per-head RMSNorm: view (..., H*D) as (..., H, D) and normalise each head vector.
Tensor head_rms_norm(const Tensor& x, const Tensor& w, int64_t n_heads, float eps) {
  const Shape s = x.shape();
  const Shape heads{x.rows() * n_heads, x.cols() / n_heads};
  return reshape(rms_norm(reshape(x, heads), w, eps), s);
}

}  // namespace

GatedDeltaNet::GatedDeltaNet(const BlockConfig& c)
    : d_model_(c.d_model),
      n_heads_(c.n_heads),
      head_dim_(c.head_dim()),
      kernel_(c.conv_kernel_size),
      use_conv_(c.use_short_conv),
      norm_eps_(float(c.norm_eps)) {
  const int64_t inner = n_heads_ * head_dim_;
  // No biases, as lmxlab's and FLA's GatedDeltaNet (the gates have dt_bias).
  q_proj_ = add_module("q_proj", std::make_unique<Linear>(d_model_, inner, false));
  k_proj_ = add_module("k_proj", std::make_unique<Linear>(d_model_, inner, false));
  v_proj_ = add_module("v_proj", std::make_unique<Linear>(d_model_, inner, false));
  a_proj_ = add_module("a_proj", std::make_unique<Linear>(d_model_, n_heads_, false));
  b_proj_ = add_module("b_proj", std::make_unique<Linear>(d_model_, n_heads_, false));
  z_proj_ = add_module("z_proj", std::make_unique<Linear>(d_model_, inner, false));
  o_proj_ =
      add_module("o_proj", std::make_unique<Linear>(inner, d_model_, false, Init::kResidualNormal));
  a_log_ = add_parameter("A_log", Shape{n_heads_}, Init::kCustom);
  dt_bias_ = add_parameter("dt_bias", Shape{n_heads_}, Init::kCustom);
  o_norm_ = add_parameter("o_norm.weight", Shape{head_dim_}, Init::kOnes);
  if (use_conv_) {
    q_conv_ = add_parameter("q_conv.weight", Shape{inner, kernel_}, Init::kCustom);
    k_conv_ = add_parameter("k_conv.weight", Shape{inner, kernel_}, Init::kCustom);
    v_conv_ = add_parameter("v_conv.weight", Shape{inner, kernel_}, Init::kCustom);
  }
}

void GatedDeltaNet::set_chunk_size(int64_t n) {
  op_check(n > 0, "gated_deltanet", "chunk size must be > 0, got " + std::to_string(n));
  chunk_ = n;
}

void GatedDeltaNet::init_custom(Rng& rng) {
  for (int64_t h = 0; h < n_heads_; ++h) {
    a_log_->data()[h] = float(std::log(1.0 + 15.0 * rng.uniform()));
    const double lo = std::log(1e-3), hi = std::log(1e-1);
    const double dt = std::max(std::exp(lo + (hi - lo) * rng.uniform()), 1e-4);
    dt_bias_->data()[h] = float(dt + std::log(-std::expm1(-dt)));  // softplus(dt_bias) = dt
  }
  const double bound = 1.0 / std::sqrt(double(kernel_));
  for (Parameter* p : {q_conv_, k_conv_, v_conv_}) {
    if (!p) continue;
    for (int64_t i = 0; i < p->numel(); ++i)
      p->data()[i] = float(bound * (2.0 * rng.uniform() - 1.0));
  }
}

Tensor GatedDeltaNet::forward(const Tensor& x, PositionEncoding& /*pos: unused*/,
                              LayerState* state) {
  GatedDeltaNetState* st = nullptr;
  if (state) {
    st = dynamic_cast<GatedDeltaNetState*>(state);
    op_check(st != nullptr, "gated_deltanet", "decoding state of another component");
    op_check(x.dim(0) == st->batch, "gated_deltanet",
             "batch " + std::to_string(x.dim(0)) + " != decoding state batch " +
                 std::to_string(st->batch));
  }
  const int64_t D = head_dim_;
  Tensor q = q_proj_->forward(x);
  Tensor k = k_proj_->forward(x);
  Tensor v = v_proj_->forward(x);
  if (use_conv_) {
    // SiLU after the conv on q, k and v as in the paper and FLA (lmxlab applies it to q only).
    auto conv = [&](const Tensor& in, Parameter* w, Buffer* tail) {
      Tensor out = silu(causal_conv1d(in, w->tensor(), tail ? tail->data() : nullptr));
      if (tail) causal_conv1d_advance(tail->data(), in, kernel_);
      return out;
    };
    q = conv(q, q_conv_, st ? &st->q_tail : nullptr);
    k = conv(k, k_conv_, st ? &st->k_tail : nullptr);
    v = conv(v, v_conv_, st ? &st->v_tail : nullptr);
  }
  // rms_norm with eps/D is sqrt(D) * l2_normalize: q keeps that factor and the
  // 1/sqrt(D) output scale becomes 1/D; k is scaled back to unit norm.
  q = head_rms_norm(q, Tensor(), n_heads_, kL2Eps / float(D));
  k = scale(head_rms_norm(k, Tensor(), n_heads_, kL2Eps / float(D)), 1.0f / std::sqrt(float(D)));
  Tensor beta = sigmoid(b_proj_->forward(x));
  Tensor g = gated_delta_decay(a_proj_->forward(x), a_log_->tensor(), dt_bias_->tensor());
  const float out_scale = 1.0f / float(D);
  Tensor o = st ? gated_delta_rule_recurrent(q, k, v, g, beta, n_heads_, out_scale, st->s.data())
                : gated_delta_rule(q, k, v, g, beta, n_heads_, out_scale, chunk_);
  if (st) st->length += x.dim(1);
  o = head_rms_norm(o, o_norm_->tensor(), n_heads_, norm_eps_);
  o = swiglu(z_proj_->forward(x), o);  // silu(z) * o
  return o_proj_->forward(o);
}

std::unique_ptr<LayerState> GatedDeltaNet::make_state(int64_t batch, int64_t /*max_len*/) const {
  auto s = std::make_unique<GatedDeltaNetState>();
  s->batch = batch;
  s->s.resize(batch * n_heads_ * head_dim_ * head_dim_);
  if (use_conv_ && kernel_ > 1) {
    const int64_t n = batch * (kernel_ - 1) * n_heads_ * head_dim_;
    s->q_tail.resize(n);
    s->k_tail.resize(n);
    s->v_tail.resize(n);
  }
  return s;
}

double GatedDeltaNet::mixing_flops_per_token(int64_t seq_len) const {
  if (seq_len <= 0) return 0.0;
  // Per head and chunk of n rows (ops/gated_delta_rule.cpp), multiply-adds x 2:
  // K Kᵀ, Q̂ Kᵀ, P U: 2 n²D each; T [βV | βΓK]: 4 n²D; W h, (ΓQ̂) h, (D⊙K)ᵀ U:
  // 2 nD² each; forward substitution for T: Σ_i i (i + 1) = (n - 1) n (n + 1) / 3.
  const double D = double(head_dim_);
  double f = 0.0;
  for (int64_t c0 = 0; c0 < seq_len; c0 += chunk_) {
    const double n = double(std::min(chunk_, seq_len - c0));
    f += 10.0 * n * n * D + 6.0 * n * D * D + (n - 1.0) * n * (n + 1.0) / 3.0;
  }
  return double(n_heads_) * f / double(seq_len);
}

}  // namespace bl
