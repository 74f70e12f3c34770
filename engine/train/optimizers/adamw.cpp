#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/optimizers/adamw.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "simd/isa.h"
#include "train/optimizers/adamw.h"

// One source for every vector ISA (simd/targets.h), dispatched at run time.
HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// GCC will not vectorise sqrt without -fno-math-errno (it keeps a scalar errno
// branch), so the body is written with Highway vector ops; the scalar loop
// handles the tail. Both use IEEE sqrt and division, and products and sums
// rounded separately (no fused multiply-add), so every ISA gives the same
// bits; chunks start at multiples of 8192, so which elements take the scalar
// path depends only on the parameter's size, never on the thread count.
void AdamWKernel(float* __restrict w, const float* __restrict g, float* __restrict m,
                 float* __restrict v, int64_t n, float b1, float b2, float decay_mul,
                 float step_size, float bc2_sqrt, float eps) {
  using D = hn::ScalableTag<float>;
  const D d;
  constexpr int64_t kN = HWY_LANES(float);
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  int64_t i = 0;
  const auto vb1 = hn::Set(d, b1), vc1 = hn::Set(d, c1), vb2 = hn::Set(d, b2), vc2 = hn::Set(d, c2),
             vdec = hn::Set(d, decay_mul), vstep = hn::Set(d, step_size),
             vbc = hn::Set(d, bc2_sqrt), veps = hn::Set(d, eps);
  for (; i + kN <= n; i += kN) {
    const auto gi = hn::LoadU(d, g + i);
    const auto mi = hn::Add(hn::Mul(vb1, hn::LoadU(d, m + i)), hn::Mul(vc1, gi));
    const auto vi = hn::Add(hn::Mul(vb2, hn::LoadU(d, v + i)), hn::Mul(hn::Mul(vc2, gi), gi));
    hn::StoreU(mi, d, m + i);
    hn::StoreU(vi, d, v + i);
    const auto denom = hn::Add(hn::Div(hn::Sqrt(vi), vbc), veps);
    const auto upd = hn::Mul(vstep, hn::Div(mi, denom));
    hn::StoreU(hn::Sub(hn::Mul(hn::LoadU(d, w + i), vdec), upd), d, w + i);
  }
  for (; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    w[i] = w[i] * decay_mul - step_size * (mi / denom);
  }
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

namespace {

HWY_EXPORT(AdamWKernel);

void check_beta(float b, const char* which) {
  if (!(b >= 0.0f && b < 1.0f))
    throw std::invalid_argument(std::string("[adamw] ") + which + " must be in [0, 1), got " +
                                std::to_string(b));
}

}  // namespace

AdamW::AdamW(std::vector<Parameter*> params, const OptimizerOptions& opt)
    : Optimizer(std::move(params), opt),
      b1_(opt.beta1.value_or(0.9f)),
      b2_(opt.beta2.value_or(0.95f)) {
  check_beta(b1_, "beta1");
  check_beta(b2_, "beta2");
  if (!(opt.eps >= 0.0f)) throw std::invalid_argument("[adamw] eps must be >= 0");
  for (size_t i = 0; i < params_.size(); ++i) {
    m_.push_back(add_state(i, "exp_avg", params_[i]->numel()));
    v_.push_back(add_state(i, "exp_avg_sq", params_[i]->numel()));
  }
  sc_.resize(params_.size());
}

void AdamW::update(float lr, const std::vector<size_t>& active) {
  // Per-parameter scalars in double (as torch computes them in Python), then float.
  for (size_t i : active) {
    const double t = double(param_step(i));
    const double bc1 = 1.0 - std::pow(double(b1_), t);
    const double bc2 = 1.0 - std::pow(double(b2_), t);
    const double wd = decays(*params_[i]) ? double(opt_.weight_decay) : 0.0;
    sc_[i] = {float(1.0 - double(lr) * wd), float(double(lr) / bc1), float(std::sqrt(bc2))};
  }
  const float b1 = b1_, b2 = b2_, eps = opt_.eps;
  for_each_chunk(active, [&](size_t i, int64_t b, int64_t e) {
    Parameter* p = params_[i];
    const Scalars& s = sc_[i];
    BL_DISPATCH(AdamWKernel)
    (p->data() + b, p->grad() + b, m_[i] + b, v_[i] + b, e - b, b1, b2, s.decay_mul, s.step_size,
     s.bc2_sqrt, eps);
  });
}

}  // namespace bl
#endif  // HWY_ONCE
