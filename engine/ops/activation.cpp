// Activations and gated linear units. Each activation's math is written once,
// as plain float code that GCC vectorises, and compiled per vector ISA by
// Highway (simd/targets.h); the ops dispatch to the CPU's best (or
// BLOCKLAB_ISA's).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/activation.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "ops/activation.h"
#include "ops/check.h"
#include "ops/exp_taylor.h"
#include "simd/isa.h"
#include "simd/vexp-inl.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

#ifndef BL_OPS_ACTIVATION_SHARED_
#define BL_OPS_ACTIVATION_SHARED_
namespace bl::act_detail {
// The activations by number, for the exported (non-template) entry points.
enum Kind : int { kSilu, kRelu, kRelu2, kSigmoid, kGeluTanh, kSiluGate, kRelu2Gate, kGeluTanhGate };
}  // namespace bl::act_detail
#endif

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace {

using namespace bl::act_detail;

// Elements per parallel task. Smaller than for plain arithmetic because
// erf/exp cost tens of cycles per element.
constexpr int64_t kChunk = 1 << 13;

template <class F>
void parallel_range(int64_t n, F&& f) {
  parallel_chunks(n, kChunk, f);
}

// exp(hi + lo) as plain float arithmetic, so loops over it vectorise (the libm
// call does not without -ffast-math). hi + lo = k ln2 + r with |r| <~ ln2/2;
// exp(r) by exp_taylor7; 2^k built in the exponent bits. Passing the argument
// as an exact hi plus a small lo keeps large arguments (-x^2/2 in the Gaussian
// tails) from losing bits to rounding. Underflows to 0 below -87, saturates at exp(88) (never inf);
// NaN propagates.
inline float exp_parts(float hi, float lo) {
  const float x = hi + lo;
  const bool under = x < -87.0f;
  const bool over = x > 88.0f;
  hi = under ? -87.0f : over ? 88.0f : hi;
  lo = under || over ? 0.0f : lo;
  constexpr float kMagic = 12582912.0f;         // 1.5 * 2^23: adding it rounds to an integer
  float kf = (hi + lo) * 1.44269504f + kMagic;  // low mantissa bits now hold k = round(x / ln2)
  const uint32_t kbits = std::bit_cast<uint32_t>(kf);
  kf -= kMagic;
  // ln2 split in two (Cody-Waite): k * 0.693145751953125 is exact, and so is
  // its difference with hi, so r keeps every bit of the argument.
  const float r = ((hi - kf * 0.693145751953125f) + lo) - kf * 1.42860682e-6f;
  const float p = exp_taylor7(r);
  // k + 127 (in [1, 254]) sits in the low bits of kbits; shift it into the exponent.
  const float v = p * std::bit_cast<float>((kbits + 127u) << 23);
  return under ? 0.0f : v;
}

inline float exp_approx(float x) {
  return exp_parts(x, 0.0f);
}

inline float sigmoid_f(float x) {
  return 1.0f / (1.0f + exp_approx(-x));
}

// sigmoid(x) and 1 - sigmoid(x) = e / (1 + e), e = exp(-x), without the
// cancellation of computing 1 - s when s is close to 1.
inline void sigmoid_pair(float x, float& s, float& one_minus_s) {
  const float e = exp_approx(-x);
  s = 1.0f / (1.0f + e);
  one_minus_s = e * s;
}

// The tanh-form GELU (GPT-2's gelu_new) as x * sigmoid(2u), since
// (1 + tanh u) / 2 = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3). Its
// derivative s + x s (1 - s) 2u' shares the one exp.
constexpr float kGeluTanhC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluTanhA = 0.044715f;
inline void gelu_tanh_f_df(float x, float& f, float& df) {
  const float x2 = x * x;
  const float two_u = 2.0f * kGeluTanhC * (x + kGeluTanhA * x2 * x);
  float s, ms;
  sigmoid_pair(two_u, s, ms);
  // Below 2u = -87 sigmoid(2u) is under float's range (exp saturates there,
  // which would leave a subnormal instead of 0).
  s = two_u < -87.0f ? 0.0f : s;
  f = x * s;
  df = s + f * ms * (2.0f * kGeluTanhC * (1.0f + 3.0f * kGeluTanhA * x2));
}

// -x^2 / 2 = hi + lo with hi exact: x splits into a 12-bit head and a tail
// (Veltkamp), the head's square fits a float exactly, the rest is small.
inline void neg_half_square(float x, float& hi, float& lo) {
  const float xh = std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0xFFFFF000u);
  const float xl = x - xh;
  hi = -0.5f * (xh * xh);
  lo = -(xh * xl + 0.5f * (xl * xl));
}

// Standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 and density phi(x),
// vectorisable, sharing one exp. For z >= 0,
//   erfc(z) = t exp(-z^2) G(u),  t = 1 / (1 + z / 2),  u = 2.4 t - 1.4,
// with G a degree-11 polynomial fitted (Chebyshev nodes, double erfc) to
// erfc(z) exp(z^2) / t over z in [0, 10] (u in [-1, 1]): relative error
// 1.5e-7 evaluated by Horner in float. The erfc form keeps the left tail
// (x << 0) relatively accurate instead of computing 1 + erf(x) with
// cancellation. exp(-z^2) = exp(-x^2/2) comes in as (hi, lo) and is phi's
// exponential too.
inline void normal_cdf_pdf(float x, float hi, float lo, float& cdf, float& pdf) {
  float z = (x < 0.0f ? -x : x) * float(M_SQRT1_2);
  z = z > 10.0f ? 10.0f : z;  // beyond, erfc < 3e-45 and exp underflows anyway
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float u = 2.4f * t - 1.4f;
  float g = -2.042821431e-06f;
  g = g * u + 5.075348097e-06f;
  g = g * u + 1.221070038e-05f;
  g = g * u - 6.566868021e-05f;
  g = g * u - 7.414539362e-07f;
  g = g * u + 5.958887893e-04f;
  g = g * u - 6.173436637e-04f;
  g = g * u - 6.154070197e-03f;
  g = g * u + 5.962419095e-03f;
  g = g * u + 1.020297772e-01f;
  g = g * u + 3.262225198e-01f;
  g = g * u + 5.720119758e-01f;
  const float e = exp_parts(hi, lo);
  const float half_erfc = 0.5f * t * e * g;
  cdf = x < 0.0f ? half_erfc : 1.0f - half_erfc;
  pdf = e * float(0.5 * M_2_SQRTPI * M_SQRT1_2);
}

// ---- The same math on Highway vectors: GCC does not vectorise the scalar
// functions above for every target (not for AVX2), so the loops use these,
// lane for lane the same formulas, and the scalar ones for their tails.
namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
constexpr int64_t kN = HWY_LANES(float);

// vec(i) on the whole vectors of [lo, hi), scalar(i) on the tail.
template <class FV, class FS>
HWY_INLINE void for_span(int64_t lo, int64_t hi, FV&& vec, FS&& scalar) {
  int64_t i = lo;
  for (; i + kN <= hi; i += kN) vec(i);
  for (; i < hi; ++i) scalar(i);
}

// for_span over [0, n) in parallel chunks. Chunks start at multiples of
// kChunk, so which elements take the scalar formula depends only on n, never
// on the thread count.
template <class FV, class FS>
void parallel_span(int64_t n, FV&& vec, FS&& scalar) {
  parallel_range(n, [&](int64_t lo, int64_t hi) HWY_ATTR { for_span(lo, hi, vec, scalar); });
}

HWY_INLINE V exp_parts_v(V hi, V lo) {
  const D d;
  const hn::RebindToSigned<D> di;
  const V x = hn::Add(hi, lo);
  const auto under = hn::Lt(x, hn::Set(d, -87.0f)), over = hn::Lt(hn::Set(d, 88.0f), x);
  hi = hn::IfThenElse(under, hn::Set(d, -87.0f), hn::IfThenElse(over, hn::Set(d, 88.0f), hi));
  lo = hn::IfThenZeroElse(hn::Or(under, over), lo);
  const V magic = hn::Set(d, 12582912.0f);
  V kf = hn::MulAdd(hn::Add(hi, lo), hn::Set(d, 1.44269504f), magic);
  const auto kbits = hn::BitCast(di, kf);
  kf = hn::Sub(kf, magic);
  const V r = hn::NegMulAdd(kf, hn::Set(d, 1.42860682e-6f),
                            hn::Add(hn::NegMulAdd(kf, hn::Set(d, 0.693145751953125f), hi), lo));
  const V v = hn::Mul(ExpTaylor7(d, r),
                      hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(kbits, hn::Set(di, 127)))));
  return hn::IfThenZeroElse(under, v);
}

// s = sigmoid(x) and ms = 1 - s, as sigmoid_pair.
HWY_INLINE void sigmoid_pair_v(V x, V& s, V& ms) {
  const D d;
  const V e = exp_parts_v(hn::Neg(x), hn::Zero(d));
  s = hn::Div(hn::Set(d, 1.0f), hn::Add(hn::Set(d, 1.0f), e));
  ms = hn::Mul(e, s);
}

// gelu_tanh_f_df on a vector.
HWY_INLINE void gelu_tanh_v(V x, V& f, V& df) {
  const D d;
  const V x2 = hn::Mul(x, x);
  const V two_u =
      hn::Mul(hn::Set(d, 2.0f * kGeluTanhC), hn::MulAdd(hn::Mul(hn::Set(d, kGeluTanhA), x2), x, x));
  V s, ms;
  sigmoid_pair_v(two_u, s, ms);
  s = hn::IfThenZeroElse(hn::Lt(two_u, hn::Set(d, -87.0f)), s);
  f = hn::Mul(x, s);
  const V du = hn::Mul(hn::Set(d, 2.0f * kGeluTanhC),
                       hn::MulAdd(hn::Set(d, 3.0f * kGeluTanhA), x2, hn::Set(d, 1.0f)));
  df = hn::MulAdd(hn::Mul(f, ms), du, s);
}

// GELU and its derivative, as neg_half_square + normal_cdf_pdf.
HWY_INLINE void gelu_v(V x, V& f, V& df) {
  const D d;
  const hn::RebindToUnsigned<D> du;
  const V xh = hn::BitCast(d, hn::And(hn::BitCast(du, x), hn::Set(du, 0xFFFFF000u)));
  const V xl = hn::Sub(x, xh);
  const V hi = hn::Mul(hn::Set(d, -0.5f), hn::Mul(xh, xh));
  const V lo = hn::Neg(hn::MulAdd(xh, xl, hn::Mul(hn::Set(d, 0.5f), hn::Mul(xl, xl))));
  V z = hn::Mul(hn::Abs(x), hn::Set(d, float(M_SQRT1_2)));
  z = hn::IfThenElse(hn::Lt(hn::Set(d, 10.0f), z), hn::Set(d, 10.0f), z);
  const V t = hn::Div(hn::Set(d, 1.0f), hn::MulAdd(hn::Set(d, 0.5f), z, hn::Set(d, 1.0f)));
  const V u = hn::MulAdd(hn::Set(d, 2.4f), t, hn::Set(d, -1.4f));
  static constexpr float kG[] = {-2.042821431e-06f, 5.075348097e-06f,  1.221070038e-05f,
                                 -6.566868021e-05f, -7.414539362e-07f, 5.958887893e-04f,
                                 -6.173436637e-04f, -6.154070197e-03f, 5.962419095e-03f,
                                 1.020297772e-01f,  3.262225198e-01f,  5.720119758e-01f};
  V g = hn::Set(d, kG[0]);
  for (int i = 1; i < 12; ++i) g = hn::MulAdd(g, u, hn::Set(d, kG[i]));
  const V e = exp_parts_v(hi, lo);
  const V half_erfc = hn::Mul(hn::Mul(hn::Mul(hn::Set(d, 0.5f), t), e), g);
  const V cdf =
      hn::IfThenElse(hn::Lt(x, hn::Zero(d)), half_erfc, hn::Sub(hn::Set(d, 1.0f), half_erfc));
  const V pdf = hn::Mul(e, hn::Set(d, float(0.5 * M_2_SQRTPI * M_SQRT1_2)));
  f = hn::Mul(x, cdf);
  df = hn::MulAdd(x, pdf, cdf);
}

// Each activation: f(x), and df(x, y) = dy/dx given the input and the output;
// vec(x, f, df) both on a vector (the loops drop what they do not use).
struct Gelu {
  static float f(float x) {
    float hi, lo, cdf, pdf;
    neg_half_square(x, hi, lo);
    normal_cdf_pdf(x, hi, lo, cdf, pdf);
    return x * cdf;
  }
  // f and f' = Phi(x) + x phi(x); both share the split -x^2/2.
  static void f_df(float x, float& f, float& df) {
    float hi, lo, cdf, pdf;
    neg_half_square(x, hi, lo);
    normal_cdf_pdf(x, hi, lo, cdf, pdf);
    f = x * cdf;
    df = cdf + x * pdf;
  }
  static void vec(V x, V& f, V& df) { gelu_v(x, f, df); }
};
struct Silu {
  static float f(float x) { return x * sigmoid_f(x); }
  static float df(float x, float) {
    float s, ms;
    sigmoid_pair(x, s, ms);
    return s * (1.0f + x * ms);
  }
  static void vec(V x, V& f, V& df) {
    V s, ms;
    sigmoid_pair_v(x, s, ms);
    f = hn::Mul(x, s);
    df = hn::Mul(s, hn::MulAdd(x, ms, hn::Set(D(), 1.0f)));
  }
};
struct GeluTanh {
  static float f(float x) {
    float f, df;
    gelu_tanh_f_df(x, f, df);
    return f;
  }
  static float df(float x, float) {
    float f, df;
    gelu_tanh_f_df(x, f, df);
    return df;
  }
  static void f_df(float x, float& f, float& df) { gelu_tanh_f_df(x, f, df); }
  static void vec(V x, V& f, V& df) { gelu_tanh_v(x, f, df); }
};
struct Relu {
  // Written so NaN propagates (NaN < 0 is false): training's NaN checks see it.
  static float f(float x) { return x < 0.0f ? 0.0f : x; }
  static float df(float x, float) { return x > 0.0f ? 1.0f : 0.0f; }
  static void vec(V x, V& f, V& df) {
    f = hn::IfThenZeroElse(hn::Lt(x, hn::Zero(D())), x);
    df = hn::IfThenElseZero(hn::Lt(hn::Zero(D()), x), hn::Set(D(), 1.0f));
  }
};
struct Relu2 {
  static float f(float x) { return x < 0.0f ? 0.0f : x * x; }
  static float df(float x, float) { return x > 0.0f ? 2.0f * x : 0.0f; }
  static void vec(V x, V& f, V& df) {
    f = hn::IfThenZeroElse(hn::Lt(x, hn::Zero(D())), hn::Mul(x, x));
    df = hn::IfThenElseZero(hn::Lt(hn::Zero(D()), x), hn::Add(x, x));
  }
};
struct Sigmoid {
  static float f(float x) { return sigmoid_f(x); }
  // s (1 - s), from x rather than from y: 1 - y would cancel for y near 1.
  static float df(float x, float) {
    float s, ms;
    sigmoid_pair(x, s, ms);
    return s * ms;
  }
  static void vec(V x, V& f, V& df) {
    V ms;
    sigmoid_pair_v(x, f, ms);
    df = hn::Mul(f, ms);
  }
};

// Gated linear units y = act(gate) * up. Each activation gives f and f' from
// one evaluation where it can (SiLU: one sigmoid serves both gradients).
struct SiluGate {
  static float f(float x) { return x * sigmoid_f(x); }
  static void f_df(float x, float& f, float& df) {
    float s, ms;
    sigmoid_pair(x, s, ms);
    f = x * s;
    df = s * (1.0f + x * ms);
  }
  static void vec(V x, V& f, V& df) { Silu::vec(x, f, df); }
};
struct Relu2Gate {
  static float f(float x) { return x > 0.0f ? x * x : 0.0f; }
  static void f_df(float x, float& f, float& df) {
    const float r = x > 0.0f ? x : 0.0f;
    f = r * r;
    df = 2.0f * r;
  }
  static void vec(V x, V& f, V& df) {
    const V r = hn::IfThenElseZero(hn::Lt(hn::Zero(D()), x), x);
    f = hn::Mul(r, r);
    df = hn::Add(r, r);
  }
};

// Templated on which gradients are wanted so each variant is a branch-free,
// vectorisable loop.
template <class A, bool kGate, bool kUp>
void glu_backward(int64_t n, const float* dy, const float* gate, const float* up, float* dgate,
                  float* dup) {
  parallel_span(
      n,
      [&](int64_t i) HWY_ATTR {
        const D d;
        V f, df;
        A::vec(hn::LoadU(d, gate + i), f, df);
        const V g = hn::LoadU(d, dy + i);
        if constexpr (kGate)
          hn::StoreU(hn::MulAdd(hn::Mul(g, hn::LoadU(d, up + i)), df, hn::LoadU(d, dgate + i)), d,
                     dgate + i);
        if constexpr (kUp) hn::StoreU(hn::MulAdd(g, f, hn::LoadU(d, dup + i)), d, dup + i);
      },
      [&](int64_t i) {
        float f, df;
        A::f_df(gate[i], f, df);
        if constexpr (kGate) dgate[i] += dy[i] * up[i] * df;
        if constexpr (kUp) dup[i] += dy[i] * f;
      });
}

template <class F>
void with_unary(int kind, F&& f) {
  switch (kind) {
    case kSilu:
      return f(Silu{});
    case kRelu:
      return f(Relu{});
    case kRelu2:
      return f(Relu2{});
    case kGeluTanh:
      return f(GeluTanh{});
    default:
      return f(Sigmoid{});
  }
}

template <class F>
void with_gate(int kind, F&& f) {
  switch (kind) {
    case kSiluGate:
      return f(SiluGate{});
    case kGeluTanhGate:
      return f(GeluTanh{});
    default:
      return f(Relu2Gate{});
  }
}

}  // namespace

void UnaryFwd(int kind, const float* x, int64_t n, float* y) {
  with_unary(kind, [&](auto a) HWY_ATTR {
    using A = decltype(a);
    parallel_span(
        n,
        [&](int64_t i) HWY_ATTR {
          V f, df;
          A::vec(hn::LoadU(D(), x + i), f, df);
          hn::StoreU(f, D(), y + i);
        },
        [&](int64_t i) { y[i] = A::f(x[i]); });
  });
}

void UnaryBwd(int kind, const float* dy, const float* x, const float* y, int64_t n, float* dx) {
  with_unary(kind, [&](auto a) HWY_ATTR {
    using A = decltype(a);
    parallel_span(
        n,
        [&](int64_t i) HWY_ATTR {
          const D d;
          V f, df;
          A::vec(hn::LoadU(d, x + i), f, df);
          hn::StoreU(hn::MulAdd(hn::LoadU(d, dy + i), df, hn::LoadU(d, dx + i)), d, dx + i);
        },
        [&](int64_t i) { dx[i] += dy[i] * A::df(x[i], y[i]); });
  });
}

void GluFwd(int kind, const float* gate, const float* up, int64_t n, float* y) {
  auto run = [&](auto a) HWY_ATTR {
    using A = decltype(a);
    parallel_span(
        n,
        [&](int64_t i) HWY_ATTR {
          V f, df;
          A::vec(hn::LoadU(D(), gate + i), f, df);
          hn::StoreU(hn::Mul(f, hn::LoadU(D(), up + i)), D(), y + i);
        },
        [&](int64_t i) { y[i] = A::f(gate[i]) * up[i]; });
  };
  with_gate(kind, run);
}

// dgate and/or dup (null when not wanted); both non-null and equal for
// glu(x, x), where both gradients land in one buffer.
void GluBwd(int kind, const float* dy, const float* gate, const float* up, int64_t n, float* dg,
            float* du) {
  auto run = [&](auto a) HWY_ATTR {
    using A = decltype(a);
    if (dg && du && dg != du) {
      glu_backward<A, true, true>(n, dy, gate, up, dg, du);
    } else {
      if (dg) glu_backward<A, true, false>(n, dy, gate, up, dg, du);
      if (du) glu_backward<A, false, true>(n, dy, gate, up, dg, du);
    }
  };
  with_gate(kind, run);
}

// GELU of x[lo, hi) into y (and GELU' into dd when given): whole vectors,
// then a scalar tail.
HWY_INLINE void gelu_span(const float* x, int64_t lo, int64_t hi, float* y, float* dd) {
  for_span(
      lo, hi,
      [&](int64_t i) HWY_ATTR {
        V f, df;
        gelu_v(hn::LoadU(D(), x + i), f, df);
        hn::StoreU(f, D(), y + i);
        if (dd) hn::StoreU(df, D(), dd + i);
      },
      [&](int64_t i) {
        if (dd)
          Gelu::f_df(x[i], y[i], dd[i]);
        else
          y[i] = Gelu::f(x[i]);
      });
}

void GeluValues(const float* x, int64_t n, float* y, float* dydx) {
  parallel_range(n, [&](int64_t lo, int64_t hi) HWY_ATTR { gelu_span(x, lo, hi, y, dydx); });
}

void GeluRows(const float* x, int64_t rows, int64_t cols, float* y, float* dydx, int64_t ld) {
  parallel_chunks(rows, std::max<int64_t>(1, kChunk / std::max<int64_t>(cols, 1)),
                  [&](int64_t lo, int64_t hi) HWY_ATTR {
                    for (int64_t r = lo; r < hi; ++r)
                      gelu_span(x + r * cols, 0, cols, y + r * ld, dydx ? dydx + r * ld : nullptr);
                  });
}

// dx = dy * GELU'(x) (or +=), GELU' kept by the forward.
void GeluBwd(const float* dy, const float* dd, int64_t n, float* dx, bool fresh) {
  parallel_range(n, [&](int64_t lo, int64_t hi) HWY_ATTR {
    if (fresh)
      for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * dd[i];
    else
      for (int64_t i = lo; i < hi; ++i) dx[i] += dy[i] * dd[i];
  });
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

namespace {

HWY_EXPORT(UnaryFwd);
HWY_EXPORT(UnaryBwd);
HWY_EXPORT(GluFwd);
HWY_EXPORT(GluBwd);
HWY_EXPORT(GeluValues);
HWY_EXPORT(GeluRows);
HWY_EXPORT(GeluBwd);
using namespace act_detail;

Tensor unary(const Tensor& x, int kind, const char* name) {
  if (!x.defined()) op_fail(name, "undefined operand");
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  const int64_t n = x.numel();
  BL_DISPATCH(UnaryFwd)(kind, x.data(), n, y.data());
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      BL_DISPATCH(UnaryBwd)(kind, dy, x.data(), y.data(), n, dx);
    });
  }
  return y;
}

Tensor glu(const Tensor& gate, const Tensor& up, int kind, const char* op) {
  if (!gate.defined() || !up.defined()) op_fail(op, "undefined operand");
  if (gate.shape() != up.shape())
    op_fail(op,
            "gate " + gate.shape().str() + " and up " + up.shape().str() + " must have one shape");
  Graph& g = current_graph();
  Tensor y = g.empty(gate.shape(), g.needs_grad({gate, up}));
  const int64_t n = gate.numel();
  BL_DISPATCH(GluFwd)(kind, gate.data(), up.data(), n, y.data());
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      float* dg = gg.grad_if_required(gate);
      float* du = gg.grad_if_required(up);
      BL_DISPATCH(GluBwd)(kind, dy, gate.data(), up.data(), n, dg, du);
    });
  }
  return y;
}

}  // namespace

void gelu_values(const float* x, int64_t n, float* y, float* dydx) {
  BL_DISPATCH(GeluValues)(x, n, y, dydx);
}

void gelu_rows(const float* x, int64_t rows, int64_t cols, float* y, float* dydx, int64_t ld) {
  if (ld == cols) return gelu_values(x, rows * cols, y, dydx);
  BL_DISPATCH(GeluRows)(x, rows, cols, y, dydx, ld);
}

// GELU's derivative needs Phi(x) again, which is most of its cost: when a
// gradient is wanted the forward keeps Phi(x) + x phi(x) (one float per
// element, graph arena) and the backward is a plain multiply-add.
Tensor gelu(const Tensor& x) {
  if (!x.defined()) op_fail("gelu", "undefined operand");
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  const int64_t n = x.numel();
  float* dd = y.requires_grad() ? g.alloc(n) : nullptr;
  gelu_values(x.data(), n, y.data(), dd);
  if (!dd) return y;
  g.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    bool fresh;
    float* dx = current_graph().grad_for_overwrite(x, fresh);
    BL_DISPATCH(GeluBwd)(dy, dd, n, dx, fresh);
  });
  return y;
}
Tensor silu(const Tensor& x) {
  return unary(x, kSilu, "silu");
}
Tensor relu(const Tensor& x) {
  return unary(x, kRelu, "relu");
}
Tensor relu2(const Tensor& x) {
  return unary(x, kRelu2, "relu2");
}
Tensor sigmoid(const Tensor& x) {
  return unary(x, kSigmoid, "sigmoid");
}
Tensor gelu_tanh(const Tensor& x) {
  return unary(x, kGeluTanh, "gelu_tanh");
}

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  return glu(gate, up, kSiluGate, "swiglu");
}
Tensor relu2_glu(const Tensor& gate, const Tensor& up) {
  return glu(gate, up, kRelu2Gate, "relu2_glu");
}
Tensor geglu_tanh(const Tensor& gate, const Tensor& up) {
  return glu(gate, up, kGeluTanhGate, "geglu_tanh");
}

}  // namespace bl
#endif  // HWY_ONCE
