// Rotary position embedding. The rotation loops are plain C++ that GCC
// vectorises once per vector ISA (simd/targets.h); the op dispatches to the
// CPU's best (or BLOCKLAB_ISA's).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/rope.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <cmath>

#include "ops/check.h"
#include "ops/rope.h"
#include "simd/isa.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace {

// Rotates (or, with sign = -1, un-rotates) every head of one (t) row and
// accumulates (kAccumulate) or stores into out. cs/sn: this row's tables.
template <bool kAccumulate>
void rotate_row(const float* in, float* out, const float* cs, const float* sn, int64_t n_heads,
                int64_t head_dim, int64_t half, float sign) {
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* a = in + h * head_dim;
    float* o = out + h * head_dim;
#pragma omp simd
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = a[i], x2 = a[i + half];
      const float s = sign * sn[i];
      const float r1 = x1 * cs[i] - x2 * s;
      const float r2 = x2 * cs[i] + x1 * s;
      if constexpr (kAccumulate) {
        o[i] += r1;
        o[i + half] += r2;
      } else {
        o[i] = r1;
        o[i + half] = r2;
      }
    }
    for (int64_t i = 2 * half; i < head_dim; ++i) {  // dims past rot_dim pass through
      if constexpr (kAccumulate)
        o[i] += a[i];
      else
        o[i] = a[i];
    }
  }
}

}  // namespace

// Rotates `rows` rows of c = n_heads * head_dim floats (row r at position
// r % t_len); backward (accumulate, sign -1) applies the inverse rotation.
void RotateRows(const float* in, float* out, const float* cs, const float* sn, int64_t rows,
                int64_t t_len, int64_t n_heads, int64_t head_dim, int64_t half, bool backward) {
  const int64_t c = n_heads * head_dim;
  parallel_for(
      rows,
      [&](int64_t r) HWY_ATTR {
        const int64_t t = r % t_len;
        if (backward)
          rotate_row<true>(in + r * c, out + r * c, cs + t * half, sn + t * half, n_heads, head_dim,
                           half, -1.0f);
        else
          rotate_row<false>(in + r * c, out + r * c, cs + t * half, sn + t * half, n_heads,
                            head_dim, half, 1.0f);
      },
      std::max<int64_t>(1, 16384 / c));
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(RotateRows);

Tensor rope(const Tensor& x, int64_t n_heads, float theta, int64_t pos_offset, int64_t rot_dim) {
  op_check(
      x.defined() && x.rank() >= 2, "rope",
      "input must be (..., T, H*head_dim), got " + (x.defined() ? x.shape().str() : "undefined"));
  const int64_t c = x.cols();
  op_check(n_heads > 0 && c % n_heads == 0, "rope",
           "last dim of " + x.shape().str() +
               " is not divisible by n_heads = " + std::to_string(n_heads));
  const int64_t head_dim = c / n_heads;
  if (rot_dim == 0) rot_dim = head_dim;
  op_check(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_dim, "rope",
           "rot_dim = " + std::to_string(rot_dim) +
               " must be even and <= head_dim = " + std::to_string(head_dim));
  op_check(theta > 0.0f, "rope", "theta must be > 0");
  const int64_t t_len = x.dim(-2);
  const int64_t rows = x.rows();  // batch * T
  const int64_t half = rot_dim / 2;
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  if (x.numel() == 0) return y;

  // cos/sin tables (T x half), computed once per call in double.
  float* cs = g.alloc(t_len * half);
  float* sn = g.alloc(t_len * half);
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(double(theta), -2.0 * double(i) / double(rot_dim));
    for (int64_t t = 0; t < t_len; ++t) {
      const double ang = double(pos_offset + t) * inv_freq;
      cs[t * half + i] = float(std::cos(ang));
      sn[t * half + i] = float(std::sin(ang));
    }
  }

  BL_DISPATCH(RotateRows)(x.data(), y.data(), cs, sn, rows, t_len, n_heads, head_dim, half, false);

  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      // The rotation is orthogonal: its adjoint is the inverse rotation.
      BL_DISPATCH(RotateRows)(dy, dx, cs, sn, rows, t_len, n_heads, head_dim, half, true);
    });
  }
  return y;
}

}  // namespace bl
#endif  // HWY_ONCE
