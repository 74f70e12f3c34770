// exp(x) as Highway vector arithmetic, for the kernels of every target
// (included inside each target's pass, Highway's -inl.h convention).
#if defined(BL_SIMD_VEXP_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BL_SIMD_VEXP_INL_H_
#undef BL_SIMD_VEXP_INL_H_
#else
#define BL_SIMD_VEXP_INL_H_
#endif

#include <hwy/highway.h>

#include "ops/exp_taylor.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

/// e^r for |r| <= ln2 / 2: kExpTaylor7 by Horner's rule, as exp_taylor7.
template <class D>
HWY_INLINE hn::Vec<D> ExpTaylor7(D d, hn::Vec<D> r) {
  auto p = hn::Set(d, kExpTaylor7[0]);
  for (int i = 1; i < 8; ++i) p = hn::MulAdd(p, r, hn::Set(d, kExpTaylor7[i]));
  return p;
}

/// exp(x) for x <= 88: x = k ln2 + r (k = round(x / ln2), r in two Cody-Waite
/// parts), e^r by ExpTaylor7, 2^k built in the exponent bits. Arguments below
/// -87 give exp(-87) (1.6e-38: no denormals); callers zero the lanes that must
/// be exactly 0. NaN propagates.
template <class D>
HWY_INLINE hn::Vec<D> Exp(D d, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  const auto lo = hn::Set(d, -87.0f), hi = hn::Set(d, 88.0f);
  x = hn::IfThenElse(hn::Lt(x, lo), lo, x);  // compares, not Min/Max: NaN stays NaN
  x = hn::IfThenElse(hn::Lt(hi, x), hi, x);
  const auto magic = hn::Set(d, 12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  auto kf = hn::MulAdd(x, hn::Set(d, 1.44269504f), magic);  // low mantissa bits now hold k
  const auto kbits = hn::BitCast(di, kf);
  kf = hn::Sub(kf, magic);
  const auto r = hn::NegMulAdd(kf, hn::Set(d, 1.42860682e-6f),
                               hn::NegMulAdd(kf, hn::Set(d, 0.693145751953125f), x));
  const auto two_k = hn::ShiftLeft<23>(hn::Add(kbits, hn::Set(di, 127)));  // k + 127 in [1, 254]
  return hn::Mul(ExpTaylor7(d, r), hn::BitCast(d, two_k));
}

/// exp(x) for x <= 88 with arguments below -87 giving exactly 0 (softmax and
/// log-softmax rows, where a far-below-max logit has probability 0).
template <class D>
HWY_INLINE hn::Vec<D> ExpOrZero(D d, hn::Vec<D> x) {
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(d, -87.0f)), Exp(d, x));
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
