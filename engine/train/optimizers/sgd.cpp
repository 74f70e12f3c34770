// One source for every vector ISA (simd/targets.h): the update loop is plain
// code that GCC vectorises for each target, dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/optimizers/sgd.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <stdexcept>

#include "simd/isa.h"
#include "train/optimizers/sgd.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

void SgdKernel(float* __restrict w, const float* __restrict g, float* __restrict buf, int64_t n,
               float wd, float mom, bool first, bool nesterov, float lr) {
  if (!buf) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * (g[i] + wd * w[i]);
    return;
  }
  const float keep = first ? 0.0f : mom;  // first step: buf = d (torch clones d)
  if (nesterov) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float d = g[i] + wd * w[i];
      const float b = keep * buf[i] + d;
      buf[i] = b;
      w[i] -= lr * (d + mom * b);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float d = g[i] + wd * w[i];
      const float b = keep * buf[i] + d;
      buf[i] = b;
      w[i] -= lr * b;
    }
  }
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(SgdKernel);

SGD::SGD(std::vector<Parameter*> params, const OptimizerOptions& opt)
    : Optimizer(std::move(params), opt) {
  if (!(opt.momentum >= 0.0f && opt.momentum < 1.0f))
    throw std::invalid_argument("[sgd] momentum must be in [0, 1), got " +
                                std::to_string(opt.momentum));
  if (opt.nesterov && opt.momentum == 0.0f)
    throw std::invalid_argument("[sgd] nesterov needs momentum > 0");
  for (size_t i = 0; i < params_.size(); ++i)
    buf_.push_back(opt.momentum > 0.0f ? add_state(i, "momentum_buffer", params_[i]->numel())
                                       : nullptr);
}

void SGD::update(float lr, const std::vector<size_t>& active) {
  const float mom = opt_.momentum;
  const bool nesterov = opt_.nesterov;
  for_each_chunk(active, [&](size_t i, int64_t b, int64_t e) {
    Parameter* p = params_[i];
    float* buf = buf_[i] ? buf_[i] + b : nullptr;
    BL_DISPATCH(SgdKernel)
    (p->data() + b, p->grad() + b, buf, e - b, decays(*p) ? opt_.weight_decay : 0.0f, mom,
     param_step(i) == 1, nesterov, lr);
  });
}

}  // namespace bl
#endif  // HWY_ONCE
