#include "ops/elementwise.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

// Elements per parallel task: below this, threading costs more than it saves
// for a memory-bound pointwise loop.
constexpr int64_t kChunk = 1 << 14;

template <class F>
void parallel_range(int64_t n, F&& f) {
  parallel_chunks(n, kChunk, f);
}

// The four binary ops: value and the partial derivatives times dy.
// kPassA / kPassB: the partial is dy itself, so the operand's gradient may
// share dy's buffer (Graph::share_grad).
struct AddOp {
  static constexpr bool kPassA = true, kPassB = true;
  static float f(float a, float b) { return a + b; }
  static float da(float dy, float, float) { return dy; }
  static float db(float dy, float, float) { return dy; }
};
struct SubOp {
  static constexpr bool kPassA = true, kPassB = false;
  static float f(float a, float b) { return a - b; }
  static float da(float dy, float, float) { return dy; }
  static float db(float dy, float, float) { return -dy; }
};
struct MulOp {
  static constexpr bool kPassA = false, kPassB = false;
  static float f(float a, float b) { return a * b; }
  static float da(float dy, float, float b) { return dy * b; }
  static float db(float dy, float a, float) { return dy * a; }
};
struct DivOp {
  static constexpr bool kPassA = false, kPassB = false;
  static float f(float a, float b) { return a / b; }
  static float da(float dy, float, float b) { return dy / b; }
  static float db(float dy, float a, float b) { return -dy * a / (b * b); }
};

// Broadcast layout of a binary op, padded at the front to rank 4.
struct Plan {
  Shape out;
  int64_t od[kMaxRank], ad[kMaxRank], bd[kMaxRank];
  int64_t sa[kMaxRank], sb[kMaxRank];  // element strides per output dim; 0 where broadcast
  int64_t n, na, nb;
};

Shape broadcast_shape_named(const Shape& a, const Shape& b, const char* op) {
  Shape out;
  out.rank = std::max(a.rank, b.rank);
  for (int i = 0; i < out.rank; ++i) {
    // Align at the back: dimension i of the output is dimension i - (out.rank - x.rank) of x.
    const int ia = i - (out.rank - a.rank), ib = i - (out.rank - b.rank);
    const int64_t da = ia >= 0 ? a.dims[ia] : 1, db = ib >= 0 ? b.dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      op_fail(op, "shapes " + a.str() + " and " + b.str() + " do not broadcast");
    out.dims[i] = da == 1 ? db : da;
  }
  return out;
}

void pad4(const Shape& s, int64_t* d) {
  const int off = kMaxRank - s.rank;
  for (int i = 0; i < kMaxRank; ++i) d[i] = i < off ? 1 : s.dims[i - off];
}

void strides4(const int64_t* d, int64_t* s) {
  int64_t st = 1;
  for (int i = kMaxRank - 1; i >= 0; --i) {
    s[i] = d[i] == 1 ? 0 : st;
    st *= d[i];
  }
}

Plan make_plan(const Tensor& a, const Tensor& b, const char* op) {
  if (!a.defined() || !b.defined()) op_fail(op, "undefined operand");
  Plan p;
  p.out = broadcast_shape_named(a.shape(), b.shape(), op);
  pad4(p.out, p.od);
  pad4(a.shape(), p.ad);
  pad4(b.shape(), p.bd);
  strides4(p.ad, p.sa);
  strides4(p.bd, p.sb);
  p.n = p.out.numel();
  p.na = a.numel();
  p.nb = b.numel();
  return p;
}

// True if x (padded dims xd) is 1s followed by a suffix of od: then x repeats
// unchanged for every "row" of the output, e.g. (T, D) in (B, T, D) or (1) anywhere.
bool is_suffix(const int64_t* xd, const int64_t* od) {
  int k = 0;
  while (k < kMaxRank && xd[k] == 1) ++k;
  for (; k < kMaxRank; ++k)
    if (xd[k] != od[k]) return false;
  return true;
}

// ---- Fast path 1: both operands have the output's shape. ----

template <class Op>
void same_forward(int64_t n, const float* a, const float* b, float* y) {
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    const float* __restrict ap = a;
    const float* __restrict bp = b;
    float* __restrict yp = y;
    for (int64_t i = lo; i < hi; ++i) yp[i] = Op::f(ap[i], bp[i]);
  });
}

// overwrite: dx is a fresh buffer (Graph::grad_for_overwrite), assigned
// instead of zeroed and added to.
template <class Op, bool kForA>
void same_backward(int64_t n, const float* dy, const float* a, const float* b, float* dx,
                   bool overwrite) {
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    const float* __restrict dyp = dy;
    const float* __restrict ap = a;
    const float* __restrict bp = b;
    float* __restrict dxp = dx;
    if (overwrite)
      for (int64_t i = lo; i < hi; ++i)
        dxp[i] = kForA ? Op::da(dyp[i], ap[i], bp[i]) : Op::db(dyp[i], ap[i], bp[i]);
    else
      for (int64_t i = lo; i < hi; ++i)
        dxp[i] += kForA ? Op::da(dyp[i], ap[i], bp[i]) : Op::db(dyp[i], ap[i], bp[i]);
  });
}

// ---- Fast path 2: one operand ("small", inner elements) repeats over rows
// of the other ("full"). kSmallIsB says which side of the op the small one is. ----

template <class Op, bool kSmallIsB>
float apply(float full, float small) {
  return kSmallIsB ? Op::f(full, small) : Op::f(small, full);
}

template <class Op, bool kSmallIsB>
void suffix_forward(int64_t n, int64_t inner, const float* full, const float* small, float* y) {
  if (inner == 1) {
    const float s = small[0];
    parallel_range(n, [&](int64_t lo, int64_t hi) {
      const float* __restrict fp = full;
      float* __restrict yp = y;
      for (int64_t i = lo; i < hi; ++i) yp[i] = apply<Op, kSmallIsB>(fp[i], s);
    });
    return;
  }
  const int64_t rows = n / inner;
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* __restrict fp = full + r * inner;
        const float* __restrict sp = small;
        float* __restrict yp = y + r * inner;
        for (int64_t j = 0; j < inner; ++j) yp[j] = apply<Op, kSmallIsB>(fp[j], sp[j]);
      },
      std::max<int64_t>(1, kChunk / inner));
}

// Partial derivative w.r.t. the full (kWrtSmall = false) or small operand.
template <class Op, bool kSmallIsB, bool kWrtSmall>
float deriv(float dy, float full, float small) {
  const float a = kSmallIsB ? full : small, b = kSmallIsB ? small : full;
  constexpr bool kWrtA = kSmallIsB != kWrtSmall;
  return kWrtA ? Op::da(dy, a, b) : Op::db(dy, a, b);
}

template <class Op, bool kSmallIsB>
void suffix_backward_full(int64_t n, int64_t inner, const float* dy, const float* full,
                          const float* small, float* dfull) {
  const int64_t rows = n / inner;
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* __restrict dyp = dy + r * inner;
        const float* __restrict fp = full + r * inner;
        const float* __restrict sp = small;
        float* __restrict dp = dfull + r * inner;
        for (int64_t j = 0; j < inner; ++j)
          dp[j] += deriv<Op, kSmallIsB, false>(dyp[j], fp[j], sp[j]);
      },
      std::max<int64_t>(1, kChunk / inner));
}

// Sums the gradient of the small operand over all rows. Each thread reduces a
// band of rows into its own double partials (no races, little rounding), then
// the partials are added in a fixed order so the result is deterministic.
template <class Op, bool kSmallIsB>
void suffix_backward_small(int64_t n, int64_t inner, const float* dy, const float* full,
                           const float* small, float* dsmall) {
  const int64_t rows = n / inner;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n / kChunk));
  double* part = current_graph().alloc_as<double>(parts * inner);
  std::memset(part, 0, sizeof(double) * size_t(parts * inner));
  parallel_for(parts, [&](int64_t t) {
    const int64_t r0 = rows * t / parts, r1 = rows * (t + 1) / parts;
    double* __restrict pp = part + t * inner;
    if (inner == 1) {
      const float s = small[0];
      double acc = 0;
      for (int64_t i = r0; i < r1; ++i) acc += deriv<Op, kSmallIsB, true>(dy[i], full[i], s);
      pp[0] = acc;
      return;
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict dyp = dy + r * inner;
      const float* __restrict fp = full + r * inner;
      const float* __restrict sp = small;
      for (int64_t j = 0; j < inner; ++j) pp[j] += deriv<Op, kSmallIsB, true>(dyp[j], fp[j], sp[j]);
    }
  });
  for (int64_t j = 0; j < inner; ++j) {
    double s = 0;
    for (int64_t t = 0; t < parts; ++t) s += part[t * inner + j];
    dsmall[j] += float(s);
  }
}

// ---- General strided path (any broadcast pattern up to rank 4). ----

template <class Op>
void general_forward(const Plan& p, const float* a, const float* b, float* y) {
  const int64_t rows = p.od[0] * p.od[1] * p.od[2], inner = p.od[3];
  const int64_t sa3 = p.sa[3], sb3 = p.sb[3];
  parallel_for(
      rows,
      [&](int64_t r) {
        const int64_t i2 = r % p.od[2], t = r / p.od[2], i1 = t % p.od[1], i0 = t / p.od[1];
        const float* ar = a + i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];
        const float* br = b + i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];
        float* __restrict yr = y + r * inner;
        if (sa3 != 0 && sb3 != 0) {
          for (int64_t j = 0; j < inner; ++j) yr[j] = Op::f(ar[j], br[j]);
        } else if (sb3 == 0) {
          const float bv = br[0];
          for (int64_t j = 0; j < inner; ++j) yr[j] = Op::f(ar[j * sa3], bv);
        } else {
          const float av = ar[0];
          for (int64_t j = 0; j < inner; ++j) yr[j] = Op::f(av, br[j]);
        }
      },
      std::max<int64_t>(1, kChunk / std::max<int64_t>(inner, 1)));
}

// Gradient of the operand x (a if kForA) with padded dims xd. Parallel over
// x's elements; each sums over the output positions that broadcast from it,
// so no two threads write the same element.
template <class Op, bool kForA>
void general_backward(const Plan& p, const float* dy, const float* a, const float* b, float* dx) {
  const int64_t* xd = kForA ? p.ad : p.bd;
  const int64_t nx = xd[0] * xd[1] * xd[2] * xd[3];
  if (nx == p.n) {
    // x has the output's layout: a plain row loop, like the forward.
    const int64_t rows = p.od[0] * p.od[1] * p.od[2], inner = p.od[3];
    parallel_for(
        rows,
        [&](int64_t r) {
          const int64_t i2 = r % p.od[2], t = r / p.od[2], i1 = t % p.od[1], i0 = t / p.od[1];
          const float* ar = a + i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];
          const float* br = b + i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];
          const float* dyr = dy + r * inner;
          float* __restrict dxr = dx + r * inner;
          for (int64_t j = 0; j < inner; ++j) {
            const float av = ar[j * p.sa[3]], bv = br[j * p.sb[3]];
            dxr[j] += kForA ? Op::da(dyr[j], av, bv) : Op::db(dyr[j], av, bv);
          }
        },
        std::max<int64_t>(1, kChunk / std::max<int64_t>(inner, 1)));
    return;
  }
  const int64_t work = std::max<int64_t>(1, p.n / std::max<int64_t>(nx, 1));
  const int64_t* od = p.od;
  parallel_for(
      nx,
      [&](int64_t e) {
        int64_t lo[kMaxRank], hi[kMaxRank];
        int64_t rem = e;
        for (int k = kMaxRank - 1; k >= 0; --k) {
          const int64_t xi = rem % xd[k];
          rem /= xd[k];
          const bool bcast = xd[k] != od[k];
          lo[k] = bcast ? 0 : xi;
          hi[k] = bcast ? od[k] : xi + 1;
        }
        double acc = 0;
        for (int64_t i0 = lo[0]; i0 < hi[0]; ++i0)
          for (int64_t i1 = lo[1]; i1 < hi[1]; ++i1)
            for (int64_t i2 = lo[2]; i2 < hi[2]; ++i2) {
              const int64_t orow = ((i0 * od[1] + i1) * od[2] + i2) * od[3];
              const int64_t arow = i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];
              const int64_t brow = i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];
              for (int64_t i3 = lo[3]; i3 < hi[3]; ++i3) {
                const float g = dy[orow + i3], av = a[arow + i3 * p.sa[3]],
                            bv = b[brow + i3 * p.sb[3]];
                acc += kForA ? Op::da(g, av, bv) : Op::db(g, av, bv);
              }
            }
        dx[e] += float(acc);
      },
      std::max<int64_t>(1, kChunk / work));
}

enum class Path { kSame, kSmallB, kSmallA, kGeneral };

template <class Op>
Tensor binary(const Tensor& a, const Tensor& b, const char* name) {
  const Plan p = make_plan(a, b, name);
  Graph& g = current_graph();
  Tensor y = g.empty(p.out, g.needs_grad({a, b}));
  if (p.n == 0) return y;
  Path path = Path::kGeneral;
  if (p.na == p.n && p.nb == p.n)
    path = Path::kSame;
  else if (p.na == p.n && is_suffix(p.bd, p.od))
    path = Path::kSmallB;
  else if (p.nb == p.n && is_suffix(p.ad, p.od))
    path = Path::kSmallA;

  const float *ad = a.data(), *bd = b.data();
  float* yd = y.data();
  switch (path) {
    case Path::kSame:
      same_forward<Op>(p.n, ad, bd, yd);
      break;
    case Path::kSmallB:
      suffix_forward<Op, true>(p.n, p.nb, ad, bd, yd);
      break;
    case Path::kSmallA:
      suffix_forward<Op, false>(p.n, p.na, bd, ad, yd);
      break;
    case Path::kGeneral:
      general_forward<Op>(p, ad, bd, yd);
      break;
  }
  if (!y.requires_grad()) return y;

  // Plan is trivially copyable (Shape + arrays), so the closure may hold it.
  g.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    const float *av = a.data(), *bv = b.data();
    if (path == Path::kSame) {
      // a is b (x + x) works too: b's buffer is then no longer fresh. One
      // operand at most shares dy's buffer (the residual stream's adds: no
      // copy of dy); the other gets its own.
      const bool distinct = a.impl() != b.impl();
      bool fresh = false, shared = false;
      if (a.requires_grad()) {
        shared = Op::kPassA && distinct && gg.share_grad(a, y);
        if (!shared) {
          float* da = gg.grad_for_overwrite(a, fresh);
          same_backward<Op, true>(p.n, dy, av, bv, da, fresh);
        }
      }
      if (b.requires_grad() && !(Op::kPassB && distinct && !shared && gg.share_grad(b, y))) {
        float* db = gg.grad_for_overwrite(b, fresh);
        same_backward<Op, false>(p.n, dy, av, bv, db, fresh);
      }
      return;
    }
    float* da = gg.grad_if_required(a);
    float* db = gg.grad_if_required(b);
    switch (path) {
      case Path::kSame:
        break;
      case Path::kSmallB:
        if (da) suffix_backward_full<Op, true>(p.n, p.nb, dy, av, bv, da);
        if (db) suffix_backward_small<Op, true>(p.n, p.nb, dy, av, bv, db);
        break;
      case Path::kSmallA:
        if (db) suffix_backward_full<Op, false>(p.n, p.na, dy, bv, av, db);
        if (da) suffix_backward_small<Op, false>(p.n, p.na, dy, bv, av, da);
        break;
      case Path::kGeneral:
        if (da) general_backward<Op, true>(p, dy, av, bv, da);
        if (db) general_backward<Op, false>(p, dy, av, bv, db);
        break;
    }
  });
  return y;
}

// y = a * s + t (scale and add_scalar share it); dy/da = s.
Tensor affine_scalar(const Tensor& a, float s, float t, const char* name) {
  if (!a.defined()) op_fail(name, "undefined operand");
  Graph& g = current_graph();
  Tensor y = g.empty(a.shape(), g.needs_grad({a}));
  const int64_t n = a.numel();
  const float* ad = a.data();
  float* yd = y.data();
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) yd[i] = ad[i] * s + t;
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* da = current_graph().grad(a);
      parallel_range(n, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) da[i] += dy[i] * s;
      });
    });
  }
  return y;
}

}  // namespace

Shape broadcast_shape(const Shape& a, const Shape& b) {
  return broadcast_shape_named(a, b, "broadcast");
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary<AddOp>(a, b, "add");
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary<SubOp>(a, b, "sub");
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary<MulOp>(a, b, "mul");
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary<DivOp>(a, b, "div");
}
Tensor scale(const Tensor& a, float s) {
  return affine_scalar(a, s, 0.0f, "scale");
}
Tensor add_scalar(const Tensor& a, float s) {
  return affine_scalar(a, 1.0f, s, "add_scalar");
}

}  // namespace bl
