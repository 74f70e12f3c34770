#include "ops/activation.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "ops/check.h"
#include "ops/exp_taylor.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

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

// Each activation: f(x), and df(x, y) = dy/dx given the input and the output.
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
};
struct Silu {
  static float f(float x) { return x * sigmoid_f(x); }
  static float df(float x, float) {
    float s, ms;
    sigmoid_pair(x, s, ms);
    return s * (1.0f + x * ms);
  }
};
struct Relu {
  // Written so NaN propagates (NaN < 0 is false): training's NaN checks see it.
  static float f(float x) { return x < 0.0f ? 0.0f : x; }
  static float df(float x, float) { return x > 0.0f ? 1.0f : 0.0f; }
};
struct Relu2 {
  static float f(float x) { return x < 0.0f ? 0.0f : x * x; }
  static float df(float x, float) { return x > 0.0f ? 2.0f * x : 0.0f; }
};
struct Sigmoid {
  static float f(float x) { return sigmoid_f(x); }
  // s (1 - s), from x rather than from y: 1 - y would cancel for y near 1.
  static float df(float x, float) {
    float s, ms;
    sigmoid_pair(x, s, ms);
    return s * ms;
  }
};

template <class A>
Tensor unary(const Tensor& x, const char* name) {
  if (!x.defined()) op_fail(name, "undefined operand");
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  const int64_t n = x.numel();
  const float* xd = x.data();
  float* yd = y.data();
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) yd[i] = A::f(xd[i]);
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      const float* xv = x.data();
      const float* yv = y.data();
      parallel_range(n, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) dx[i] += dy[i] * A::df(xv[i], yv[i]);
      });
    });
  }
  return y;
}

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
};
struct Relu2Gate {
  static float f(float x) { return x > 0.0f ? x * x : 0.0f; }
  static void f_df(float x, float& f, float& df) {
    const float r = x > 0.0f ? x : 0.0f;
    f = r * r;
    df = 2.0f * r;
  }
};

// Templated on which gradients are wanted so each variant is a branch-free,
// vectorisable loop.
template <class A, bool kGate, bool kUp>
void glu_backward(int64_t n, const float* dy, const float* gate, const float* up, float* dgate,
                  float* dup) {
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    const float* __restrict dyp = dy;
    const float* __restrict gp = gate;
    const float* __restrict upp = up;
    float* __restrict dgp = dgate;
    float* __restrict dup_ = dup;
    for (int64_t i = lo; i < hi; ++i) {
      float f, df;
      A::f_df(gp[i], f, df);
      if constexpr (kGate) dgp[i] += dyp[i] * upp[i] * df;
      if constexpr (kUp) dup_[i] += dyp[i] * f;
    }
  });
}

template <class A>
Tensor glu(const Tensor& gate, const Tensor& up, const char* op) {
  if (!gate.defined() || !up.defined()) op_fail(op, "undefined operand");
  if (gate.shape() != up.shape())
    op_fail(op,
            "gate " + gate.shape().str() + " and up " + up.shape().str() + " must have one shape");
  Graph& g = current_graph();
  Tensor y = g.empty(gate.shape(), g.needs_grad({gate, up}));
  const int64_t n = gate.numel();
  const float* gd = gate.data();
  const float* ud = up.data();
  float* yd = y.data();
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) yd[i] = A::f(gd[i]) * ud[i];
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      float* dg = gg.grad_if_required(gate);
      float* du = gg.grad_if_required(up);
      const float* gv = gate.data();
      const float* uv = up.data();
      if (dg && du && dg != du) {
        glu_backward<A, true, true>(n, dy, gv, uv, dg, du);
      } else {  // one gradient, or glu(x, x) where both land in one buffer
        if (dg) glu_backward<A, true, false>(n, dy, gv, uv, dg, du);
        if (du) glu_backward<A, false, true>(n, dy, gv, uv, dg, du);
      }
    });
  }
  return y;
}

}  // namespace

void gelu_values(const float* x, int64_t n, float* y, float* dydx) {
  if (!dydx) {
    parallel_range(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) y[i] = Gelu::f(x[i]);
    });
    return;
  }
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    const float* __restrict xp = x;
    float* __restrict yp = y;
    float* __restrict dp = dydx;
    for (int64_t i = lo; i < hi; ++i) Gelu::f_df(xp[i], yp[i], dp[i]);
  });
}

void gelu_rows(const float* x, int64_t rows, int64_t cols, float* y, float* dydx, int64_t ld) {
  if (ld == cols) return gelu_values(x, rows * cols, y, dydx);
  parallel_chunks(rows, std::max<int64_t>(1, kChunk / std::max<int64_t>(cols, 1)),
                  [&](int64_t lo, int64_t hi) {
                    for (int64_t r = lo; r < hi; ++r) {
                      const float* __restrict xp = x + r * cols;
                      float* __restrict yp = y + r * ld;
                      if (!dydx) {
                        for (int64_t i = 0; i < cols; ++i) yp[i] = Gelu::f(xp[i]);
                        continue;
                      }
                      float* __restrict dp = dydx + r * ld;
                      for (int64_t i = 0; i < cols; ++i) Gelu::f_df(xp[i], yp[i], dp[i]);
                    }
                  });
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
    parallel_range(n, [&](int64_t lo, int64_t hi) {
      if (fresh)
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * dd[i];
      else
        for (int64_t i = lo; i < hi; ++i) dx[i] += dy[i] * dd[i];
    });
  });
  return y;
}
Tensor silu(const Tensor& x) {
  return unary<Silu>(x, "silu");
}
Tensor relu(const Tensor& x) {
  return unary<Relu>(x, "relu");
}
Tensor relu2(const Tensor& x) {
  return unary<Relu2>(x, "relu2");
}
Tensor sigmoid(const Tensor& x) {
  return unary<Sigmoid>(x, "sigmoid");
}

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  return glu<SiluGate>(gate, up, "swiglu");
}
Tensor relu2_glu(const Tensor& gate, const Tensor& up) {
  return glu<Relu2Gate>(gate, up, "relu2_glu");
}

}  // namespace bl
