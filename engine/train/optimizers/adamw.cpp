#include "train/optimizers/adamw.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace bl {

namespace {

void check_beta(float b, const char* which) {
  if (!(b >= 0.0f && b < 1.0f))
    throw std::invalid_argument(std::string("[adamw] ") + which + " must be in [0, 1), got " +
                                std::to_string(b));
}

// GCC will not vectorise sqrt without -fno-math-errno (it keeps a scalar errno
// branch), so the body is written with intrinsics for the ISA we compile for;
// the scalar loop handles the tail and ISAs without AVX. Both use IEEE sqrt and
// division; chunks start at multiples of 8192, so which elements take the scalar
// path depends only on the parameter's size, never on the thread count.
void adamw_kernel(float* __restrict w, const float* __restrict g, float* __restrict m,
                  float* __restrict v, int64_t n, float b1, float b2, float decay_mul,
                  float step_size, float bc2_sqrt, float eps) {
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  int64_t i = 0;
#if defined(__AVX512F__)
  {
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(c1), vb2 = _mm512_set1_ps(b2),
                 vc2 = _mm512_set1_ps(c2), vdec = _mm512_set1_ps(decay_mul),
                 vstep = _mm512_set1_ps(step_size), vbc = _mm512_set1_ps(bc2_sqrt),
                 veps = _mm512_set1_ps(eps);
    for (; i + 16 <= n; i += 16) {
      const __m512 gi = _mm512_loadu_ps(g + i);
      const __m512 mi =
          _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(vc1, gi));
      const __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_loadu_ps(v + i)),
                                      _mm512_mul_ps(_mm512_mul_ps(vc2, gi), gi));
      _mm512_storeu_ps(m + i, mi);
      _mm512_storeu_ps(v + i, vi);
      const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc), veps);
      const __m512 upd = _mm512_mul_ps(vstep, _mm512_div_ps(mi, denom));
      _mm512_storeu_ps(w + i, _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(w + i), vdec), upd));
    }
  }
#elif defined(__AVX__)
  {
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(c1), vb2 = _mm256_set1_ps(b2),
                 vc2 = _mm256_set1_ps(c2), vdec = _mm256_set1_ps(decay_mul),
                 vstep = _mm256_set1_ps(step_size), vbc = _mm256_set1_ps(bc2_sqrt),
                 veps = _mm256_set1_ps(eps);
    for (; i + 8 <= n; i += 8) {
      const __m256 gi = _mm256_loadu_ps(g + i);
      const __m256 mi =
          _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vc1, gi));
      const __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)),
                                      _mm256_mul_ps(_mm256_mul_ps(vc2, gi), gi));
      _mm256_storeu_ps(m + i, mi);
      _mm256_storeu_ps(v + i, vi);
      const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc), veps);
      const __m256 upd = _mm256_mul_ps(vstep, _mm256_div_ps(mi, denom));
      _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), vdec), upd));
    }
  }
#endif
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
    adamw_kernel(p->data() + b, p->grad() + b, m_[i] + b, v_[i] + b, e - b, b1, b2, s.decay_mul,
                 s.step_size, s.bc2_sqrt, eps);
  });
}

}  // namespace bl
