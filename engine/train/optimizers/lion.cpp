// One source for every vector ISA (simd/targets.h): the update loop is plain
// code that GCC vectorises for each target, dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/optimizers/lion.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <stdexcept>

#include "simd/isa.h"
#include "train/optimizers/lion.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

void LionKernel(float* __restrict w, const float* __restrict g, float* __restrict m, int64_t n,
                float b1, float b2, float decay_mul, float lr) {
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], mi = m[i];
    const float c = b1 * mi + c1 * gi;
    const float sgn = float(c > 0.0f) - float(c < 0.0f);
    w[i] = w[i] * decay_mul - lr * sgn;
    m[i] = b2 * mi + c2 * gi;
  }
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(LionKernel);

Lion::Lion(std::vector<Parameter*> params, const OptimizerOptions& opt)
    : Optimizer(std::move(params), opt),
      b1_(opt.beta1.value_or(0.9f)),
      b2_(opt.beta2.value_or(0.99f)) {
  for (float b : {b1_, b2_})
    if (!(b >= 0.0f && b < 1.0f))
      throw std::invalid_argument("[lion] betas must be in [0, 1), got " + std::to_string(b));
  for (size_t i = 0; i < params_.size(); ++i)
    m_.push_back(add_state(i, "exp_avg", params_[i]->numel()));
}

void Lion::update(float lr, const std::vector<size_t>& active) {
  const float b1 = b1_, b2 = b2_;
  const float wd_mul = float(1.0 - double(lr) * double(opt_.weight_decay));
  for_each_chunk(active, [&](size_t i, int64_t b, int64_t e) {
    Parameter* p = params_[i];
    BL_DISPATCH(LionKernel)
    (p->data() + b, p->grad() + b, m_[i] + b, e - b, b1, b2, decays(*p) ? wd_mul : 1.0f, lr);
  });
}

}  // namespace bl
#endif  // HWY_ONCE
