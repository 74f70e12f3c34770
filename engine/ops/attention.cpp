// Fused attention.
//
// Forward saves only the row logsumexps (B, Hq, Tq) when a gradient is
// needed; backward recomputes each block's probabilities P = exp(S - lse)
// while they are hot in L1/L2 (flash-attention style). Saving P instead
// measured ~5% faster on one thread at B=16, H=8, T=256, but costs 36 MB of
// arena per layer and twice that in memory traffic, which the 2 cores share.
//
// Work is split per (batch, kv head): that task transposes/packs its K and V
// once, then runs every query head of its GQA group in blocks of kBlock query
// rows. Every mask (causal, window, chunk) restricts a query row to one
// contiguous key interval, so a block only computes the union of its rows'
// intervals (the causal upper triangle is skipped but for the diagonal
// blocks). Keys outside a block's column range are never touched. In backward the same split means
// one task owns dK/dV of its kv head and dQ of its query heads: no accumulation races.
//
// The products (32 x 256 x 32 and the like) run on a register-tiled kernel
// over packed, L1-friendly copies; a general GEMM spends much of its time
// packing such small operands.
#include "ops/attention.h"

#include <immintrin.h>
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

// Query rows per block. 16 measured faster than 32 and 64 (bench/ops_bench
// BM_Attention, T = 128 and 256, d = 32): less of the causal diagonal computed.
constexpr int64_t kBlock = 16;

int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Where one task's data starts: its first K and V rows (its kv heads'
// columns) and its first Q and O rows (its query heads' columns).
struct TaskRows {
  int64_t k, v, q, o;
};

struct Geometry {
  int64_t batch, tq, tk, hq, hkv, d, group, nblk;
  int64_t ldq, ldk;      // row strides of q and of k
  int64_t dv, ldv, ldo;  // value head dim (may differ from d, MLA), row strides of v and out
  int64_t ck = 1;        // kv heads per task (a divisor of hkv)

  int64_t chunks() const { return hkv / ck; }
  int64_t tasks() const { return batch * chunks(); }
  // Column widths of one task's slice of q, k, v and out.
  int64_t wq() const { return ck * group * d; }
  int64_t wk() const { return ck * d; }
  int64_t wv() const { return ck * dv; }
  int64_t wo() const { return ck * group * dv; }
  int64_t first_head(int64_t task) const { return task % chunks() * ck * group; }

  TaskRows rows(int64_t task) const {
    const int64_t b = task / chunks(), c = task % chunks();
    return {b * tk * ldk + c * wk(), b * tk * ldv + c * wv(), b * tq * ldq + c * wq(),
            b * tq * ldo + c * wo()};
  }
};

struct Mask {
  int64_t tk, q_off, k_off, window, chunk;
  bool causal;

  // Allowed key indices [*lo, *hi) of query row i; empty when *lo == *hi.
  void range(int64_t i, int64_t* lo, int64_t* hi) const {
    const int64_t qp = q_off + i;
    int64_t a = 0, e = tk;
    if (causal) e = std::min(e, qp - k_off + 1);
    if (window > 0) a = std::max(a, qp - window + 1 - k_off);
    if (chunk > 0) {
      const int64_t c0 = floor_div(qp, chunk) * chunk;
      a = std::max(a, c0 - k_off);
      e = std::min(e, c0 + chunk - k_off);
    }
    if (e < a) e = a;
    *lo = a;
    *hi = e;
  }
};

// Key intervals of the rows of one query block and their union [cl, ch).
struct BlockRanges {
  int64_t lo[kBlock], hi[kBlock];
  int64_t cl, ch;

  BlockRanges(const Mask& mask, int64_t i0, int64_t m) {
    cl = mask.tk;
    ch = 0;
    for (int64_t r = 0; r < m; ++r) {
      mask.range(i0 + r, &lo[r], &hi[r]);
      if (lo[r] < hi[r]) {
        cl = std::min(cl, lo[r]);
        ch = std::max(ch, hi[r]);
      }
    }
  }
  bool empty() const { return ch <= cl; }
};

// ---- Small-matrix products --------------------------------------------------
// C = alpha * A B (+ C) with A(i, l) = a[i * ars + l * acs] (any strides, so
// Aᵀ is free) and B rows contiguous (b[l * ldb + j]). A tile of R rows x 16/32
// columns lives in registers; GCC/Clang vector extensions lower it to the
// target's vector ISA (8 x 32 tiles reach ~110 GFLOP/s on one Zen 4 core).

typedef float Vec16 __attribute__((vector_size(64), aligned(4), may_alias));

#if defined(__AVX512F__)
constexpr int kTileRows = 8;  // 8 x 32 accumulators = 16 zmm registers
#else
constexpr int kTileRows = 4;
#endif

template <int R, int NV, bool kAcc>
inline void vec_tile(int64_t k, float alpha, const float* a, int64_t ars, int64_t acs,
                     const float* b, int64_t ldb, float* c, int64_t ldc) {
  Vec16 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec16{};
  for (int64_t l = 0; l < k; ++l) {
    const float* bl = b + l * ldb;
    const float* al = a + l * acs;
    Vec16 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = *reinterpret_cast<const Vec16*>(bl + 16 * v);
    for (int r = 0; r < R; ++r) {
      const float av = al[r * ars];
      for (int v = 0; v < NV; ++v) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      Vec16* cp = reinterpret_cast<Vec16*>(c + r * ldc + 16 * v);
      *cp = kAcc ? *cp + alpha * acc[r][v] : alpha * acc[r][v];
    }
}

// Column tail narrower than 16.
template <int R, bool kAcc>
inline void tail_tile(int64_t k, float alpha, const float* a, int64_t ars, int64_t acs,
                      const float* b, int64_t ldb, float* c, int64_t ldc, int64_t wn) {
  float acc[R][16] = {};
  for (int64_t l = 0; l < k; ++l) {
    const float* bl = b + l * ldb;
    const float* al = a + l * acs;
    for (int r = 0; r < R; ++r) {
      const float av = al[r * ars];
      for (int64_t w = 0; w < wn; ++w) acc[r][w] += av * bl[w];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int64_t w = 0; w < wn; ++w) {
      float* cp = c + r * ldc + w;
      *cp = kAcc ? *cp + alpha * acc[r][w] : alpha * acc[r][w];
    }
}

template <int R, bool kAcc>
inline void tile(int64_t wn, int64_t k, float alpha, const float* a, int64_t ars, int64_t acs,
                 const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (wn == 32)
    vec_tile<R, 2, kAcc>(k, alpha, a, ars, acs, b, ldb, c, ldc);
  else if (wn == 16)
    vec_tile<R, 1, kAcc>(k, alpha, a, ars, acs, b, ldb, c, ldc);
  else
    tail_tile<R, kAcc>(k, alpha, a, ars, acs, b, ldb, c, ldc, wn);
}

template <bool kAcc>
void tile_rows(int64_t rows, int64_t wn, int64_t k, float alpha, const float* a, int64_t ars,
               int64_t acs, const float* b, int64_t ldb, float* c, int64_t ldc) {
  switch (rows) {
    case 1:
      return tile<1, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    case 2:
      return tile<2, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    case 3:
      return tile<3, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    case 4:
      return tile<4, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    case 5:
      return tile<5, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    case 6:
      return tile<6, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    case 7:
      return tile<7, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    default:
      return tile<8, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
  }
}

// C (m x n) = alpha * A (m x k) B (k x n), plus C when kAcc.
template <bool kAcc>
void small_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t ars,
                int64_t acs, const float* b, int64_t ldb, float* c, int64_t ldc) {
  // Column panels outermost: the k x 32 panel of B stays in L1 across row tiles.
  for (int64_t j = 0; j < n;) {
    const int64_t wn = n - j >= 32 ? 32 : n - j >= 16 ? 16 : n - j;
    for (int64_t i = 0; i < m; i += kTileRows)
      tile_rows<kAcc>(std::min<int64_t>(kTileRows, m - i), wn, k, alpha, a + i * ars, ars, acs,
                      b + j, ldb, c + i * ldc + j, ldc);
    j += wn;
  }
}

// Row stride for buffers of rows of n floats: a multiple of 16 floats that
// is an odd number of 64-byte lines, so successive rows spread over all L1
// sets (a 1 KiB stride, e.g. Tk = 256, would use only 1/16 of them).
int64_t padded_ld(int64_t n) {
  const int64_t n16 = (n + 15) / 16 * 16;
  return (n16 / 16) % 2 ? n16 : n16 + 16;
}

// dst (n x d, contiguous) = n rows of d floats at stride ld_src.
void pack_rows(const float* src, int64_t ld_src, int64_t n, int64_t d, float* dst) {
  for (int64_t j = 0; j < n; ++j) {
    const float* s = src + j * ld_src;
    float* t = dst + j * d;
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) t[c] = s[c];
  }
}

typedef float Vec8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef int Idx8 __attribute__((vector_size(32)));
#if defined(__clang__)
#define BL_SHUFFLE8(x, y, ...) __builtin_shufflevector(x, y, __VA_ARGS__)
#else
#define BL_SHUFFLE8(x, y, ...) __builtin_shuffle(x, y, (Idx8){__VA_ARGS__})
#endif

// o (8 x 8, row stride lo) = transpose of s (8 x 8, row stride ls), in registers.
inline void transpose8x8(const float* s, int64_t ls, float* o, int64_t lo) {
  Vec8 r[8];
  for (int i = 0; i < 8; ++i) r[i] = *reinterpret_cast<const Vec8*>(s + i * ls);
  Vec8 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = BL_SHUFFLE8(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * i + 1] = BL_SHUFFLE8(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 2; ++k) {
      u[4 * i + 2 * k] = BL_SHUFFLE8(t[4 * i + k], t[4 * i + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[4 * i + 2 * k + 1] =
          BL_SHUFFLE8(t[4 * i + k], t[4 * i + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int i = 0; i < 4; ++i) {
    *reinterpret_cast<Vec8*>(o + i * lo) = BL_SHUFFLE8(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    *reinterpret_cast<Vec8*>(o + (i + 4) * lo) =
        BL_SHUFFLE8(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}
#undef BL_SHUFFLE8

// dst (d x n, row stride ld) = transpose of n rows of d floats at stride
// ld_src: 8 x 8 register transposes (5x faster than element moves), scalar
// edges.
void pack_transposed(const float* src, int64_t ld_src, int64_t n, int64_t d, float* dst,
                     int64_t ld) {
  const int64_t n8 = n / 8 * 8, d8 = d / 8 * 8;
  for (int64_t j = 0; j < n8; j += 8)
    for (int64_t c = 0; c < d8; c += 8)
      transpose8x8(src + j * ld_src + c, ld_src, dst + c * ld + j, ld);
  for (int64_t c = d8; c < d; ++c)
    for (int64_t j = 0; j < n8; ++j) dst[c * ld + j] = src[j * ld_src + c];
  for (int64_t j = n8; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) dst[c * ld + j] = src[j * ld_src + c];
}

#if defined(__AVX512F__)
// Score rows in whole 16-lane vectors over the allowed keys [a, e) widened
// to vector boundaries; lanes outside [a, e) are masked: loaded as -inf,
// stored as 0. exp is evaluated inline (below). The row buffers are padded
// to whole vectors (padded_ld), so the widening never leaves them.

// exp(x) for x <= 88: n = round(x / ln 2), r = x - n ln 2 in two parts
// (Cody-Waite), e^r by its Taylor series to degree 7 (truncation < 6e-9
// relative), 2^n applied by vscalefps. Arguments below -87 give exp(-87)
// (1.6e-38, the smallest normal range; no denormals): the callers mask the
// lanes that must be exactly 0. NaN propagates.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);  // NaN stays NaN (second operand)
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lanes of the vector at column j that lie in [a, e).
inline __mmask16 span_mask(int64_t j, int64_t a, int64_t e) {
  const int64_t lo = a - j, hi = e - j;
  const uint32_t below = lo <= 0 ? 0u : lo >= 16 ? 0xFFFFu : (1u << lo) - 1u;
  const uint32_t upto = hi >= 16 ? 0xFFFFu : hi <= 0 ? 0u : (1u << hi) - 1u;
  return __mmask16(upto & ~below);
}

// Scores of the vector at column j over [a, e) plus the ALiBi bias
// -slope * (base - column), -inf outside.
inline __m512 load_scores(const float* row, int64_t j, int64_t a, int64_t e, float slope,
                          float base) {
  const __mmask16 m = span_mask(j, a, e);
  __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), m,
                                  row + j);
  if (slope != 0.0f) {
    const __m512 col = _mm512_add_ps(
        _mm512_set1_ps(float(j)),
        _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    x = _mm512_mask_sub_ps(x, m, x,
                           _mm512_mul_ps(_mm512_set1_ps(slope),
                                         _mm512_sub_ps(_mm512_set1_ps(base), col)));
  }
  return x;
}

// Zeros the whole vectors of the row outside [a0, e1).
inline void zero_outside(float* row, int64_t n, int64_t a0, int64_t e1) {
  for (int64_t j = 0; j < a0; j += 16) _mm512_storeu_ps(row + j, _mm512_setzero_ps());
  for (int64_t j = e1; j < n; j += 16) _mm512_storeu_ps(row + j, _mm512_setzero_ps());
}

// In place, one score row becomes exp(s + bias - max) over its allowed keys
// [a, e) and 0 elsewhere: unnormalised, the caller scales the row's output by
// 1 / sum (a dv-wide pass instead of an n-wide one). base = q_pos - k_pos of
// column 0. Gives max and sum; sum = 0 for a fully masked row.
inline void exp_row(float* row, int64_t n, int64_t a, int64_t e, float slope, float base,
                    float* max_out, float* sum_out) {
  if (a >= e) {
    std::memset(row, 0, sizeof(float) * size_t(n));
    *max_out = 0.0f;
    *sum_out = 0.0f;
    return;
  }
  const int64_t a0 = a / 16 * 16, e1 = (e + 15) / 16 * 16;
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = a0; j < e1; j += 16)
    vmax = _mm512_max_ps(vmax, load_scores(row, j, a, e, slope, base));
  const float mx = _mm512_reduce_max_ps(vmax);
  const __m512 pm = _mm512_set1_ps(mx);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t j = a0; j < e1; j += 16) {
    const __m512 p = _mm512_maskz_mov_ps(
        span_mask(j, a, e), exp512(_mm512_sub_ps(load_scores(row, j, a, e, slope, base), pm)));
    _mm512_storeu_ps(row + j, p);
    vsum = _mm512_add_ps(vsum, p);
  }
  zero_outside(row, n, a0, e1);
  *max_out = mx;
  *sum_out = _mm512_reduce_add_ps(vsum);
}

// Backward's recompute of one probability row from its scores and the saved
// logsumexp: P = exp(S + bias - lse) on [a, e), 0 elsewhere.
inline void probs_row(float* row, int64_t n, int64_t a, int64_t e, float slope, float base,
                      float lse) {
  if (a >= e) {
    std::memset(row, 0, sizeof(float) * size_t(n));
    return;
  }
  const int64_t a0 = a / 16 * 16, e1 = (e + 15) / 16 * 16;
  const __m512 pl = _mm512_set1_ps(lse);
  for (int64_t j = a0; j < e1; j += 16)
    _mm512_storeu_ps(row + j, _mm512_maskz_mov_ps(span_mask(j, a, e),
                                                  exp512(_mm512_sub_ps(
                                                      load_scores(row, j, a, e, slope, base), pl))));
  zero_outside(row, n, a0, e1);
}

#else
// Score rows are processed in whole packets (Eigen's, so any vector ISA) over
// the allowed keys [a, e) widened to packet boundaries: the widening lanes are
// set to -inf first, which exp maps to exactly 0. No scalar exp calls for
// unaligned heads and tails, which cost more than the vector body on rows of
// 16-128 keys. Row buffers are padded to whole packets (padded_ld).
using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int64_t kLanes = Eigen::internal::packet_traits<float>::size;

struct RowSpan {
  int64_t a0, e1;  // [a, e) widened to whole packets
};

// Applies the ALiBi bias on [a, e), puts -inf in the widening lanes and zeros
// outside them. Returns the widened span. (Causal blocks need neither zeros
// nor bias: the span ends at the block's last column.)
inline RowSpan prepare_row(float* row, int64_t n, int64_t a, int64_t e, float slope, float base) {
  const RowSpan sp{a / kLanes * kLanes, (e + kLanes - 1) / kLanes * kLanes};
  if (slope != 0.0f) {
#pragma omp simd
    for (int64_t j = a; j < e; ++j) row[j] -= slope * (base - float(j));
  }
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t j = sp.a0; j < a; ++j) row[j] = ninf;
  for (int64_t j = e; j < sp.e1; ++j) row[j] = ninf;
  for (int64_t j = 0; j < sp.a0; ++j) row[j] = 0.0f;
  for (int64_t j = sp.e1; j < n; ++j) row[j] = 0.0f;
  return sp;
}

// In place, one score row becomes exp(s + bias - max) over its allowed keys
// [a, e) and 0 elsewhere: unnormalised, the caller scales the row's output by
// 1 / sum (a dv-wide pass instead of an n-wide one). base = q_pos - k_pos of
// column 0. Gives max and sum; sum = 0 for a fully masked row.
inline void exp_row(float* row, int64_t n, int64_t a, int64_t e, float slope, float base,
                    float* max_out, float* sum_out) {
  using namespace Eigen::internal;
  if (a >= e) {
    std::memset(row, 0, sizeof(float) * size_t(n));
    *max_out = 0.0f;
    *sum_out = 0.0f;
    return;
  }
  const RowSpan sp = prepare_row(row, n, a, e, slope, base);
  Packet vmax = pset1<Packet>(-std::numeric_limits<float>::infinity());
  for (int64_t j = sp.a0; j < sp.e1; j += kLanes) vmax = pmax(vmax, ploadu<Packet>(row + j));
  const float mx = predux_max(vmax);
  const Packet pm = pset1<Packet>(mx);
  Packet vsum = pset1<Packet>(0.0f);
  for (int64_t j = sp.a0; j < sp.e1; j += kLanes) {
    const Packet p = pexp(psub(ploadu<Packet>(row + j), pm));
    pstoreu(row + j, p);
    vsum = padd(vsum, p);
  }
  *max_out = mx;
  *sum_out = predux(vsum);
}

// Backward's recompute of one probability row from its scores and the saved
// logsumexp: P = exp(S + bias - lse) on [a, e), 0 elsewhere.
inline void probs_row(float* row, int64_t n, int64_t a, int64_t e, float slope, float base,
                      float lse) {
  using namespace Eigen::internal;
  if (a >= e) {
    std::memset(row, 0, sizeof(float) * size_t(n));
    return;
  }
  const RowSpan sp = prepare_row(row, n, a, e, slope, base);
  const Packet pl = pset1<Packet>(lse);
  for (int64_t j = sp.a0; j < sp.e1; j += kLanes)
    pstoreu(row + j, pexp(psub(ploadu<Packet>(row + j), pl)));
}

#endif

// dst rows (stride ld) = src (rows x cols, contiguous), or += when !overwrite.
void store_rows(const float* src, int64_t rows, int64_t cols, float* dst, int64_t ld,
                bool overwrite) {
  for (int64_t j = 0; j < rows; ++j) {
    float* __restrict o = dst + j * ld;
    const float* __restrict a = src + j * cols;
    if (overwrite) {
      std::memcpy(o, a, sizeof(float) * size_t(cols));
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) o[c] += a[c];
    }
  }
}

// Starts loading `rows` rows of `cols` floats at stride ld into L2, ahead of
// their use: Q/K/V rows sit at a stride of the fused projection's width, which
// the hardware prefetcher follows poorly, and a task would otherwise wait on
// each of its first-touch misses in turn.
void prefetch_rows(const float* p, int64_t ld, int64_t rows, int64_t cols, bool write = false) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += 16) {
      if (write)
        __builtin_prefetch(p + r * ld + c, 1, 2);
      else
        __builtin_prefetch(p + r * ld + c, 0, 2);
    }
}

// kv heads per task. Preferably all of them: a task then reads whole rows of
// Q, K, V and O (for (B, T, H*D) tensors, one contiguous stretch per batch
// element) in sweeps the hardware prefetcher follows, where one head's columns
// are short pieces at a stride. Fewer when that would leave a thread idle or
// the task's packed operands (backward's, the larger) would not fit L2.
int64_t kv_heads_per_task(const Geometry& gm, int64_t ldt, int threads) {
  for (int64_t ck = gm.hkv; ck > 1; --ck) {
    if (gm.hkv % ck != 0) continue;
    const int64_t tasks = gm.batch * (gm.hkv / ck);
    const int64_t floats = ck * ((gm.d + gm.dv) * ldt + gm.tk * (2 * gm.d + gm.dv));
    const bool fits = floats * int64_t(sizeof(float)) <= (int64_t(512) << 10);
    const bool balanced = tasks % threads == 0 || tasks >= 4 * int64_t(threads);
    if (fits && balanced) return ck;
  }
  return 1;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t n_heads,
                 int64_t n_kv_heads, const AttentionOptions& opt) {
  op_check(q.defined() && k.defined() && v.defined(), "attention", "q, k and v must be defined");
  op_check(q.rank() == 3 && k.rank() == 3 && v.rank() == 3, "attention",
           "q, k, v must be (B, T, H*D), got " + q.shape().str() + ", " + k.shape().str() + ", " +
               v.shape().str());
  op_check(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention",
           "n_heads = " + std::to_string(n_heads) +
               " must be a positive multiple of n_kv_heads = " + std::to_string(n_kv_heads));
  op_check(q.cols() % n_heads == 0, "attention",
           "q " + q.shape().str() +
               " last dim is not divisible by n_heads = " + std::to_string(n_heads));
  const int64_t d = q.cols() / n_heads;
  op_check(k.cols() == n_kv_heads * d, "attention",
           "k " + k.shape().str() + " must have last dim n_kv_heads * head_dim = " +
               std::to_string(n_kv_heads * d) + " (q " + q.shape().str() + ")");
  const int64_t v_hd = opt.v_head_dim > 0 ? opt.v_head_dim : d;
  op_check(v.rank() == 3 && v.dim(0) == k.dim(0) && v.dim(1) == k.dim(1) &&
               v.cols() == n_kv_heads * v_hd,
           "attention",
           "v " + v.shape().str() + " must be (B, Tk, n_kv_heads * v_head_dim = " +
               std::to_string(n_kv_heads * v_hd) + ") with k " + k.shape().str());
  op_check(q.dim(0) == k.dim(0), "attention",
           "batch sizes differ: q " + q.shape().str() + ", k " + k.shape().str());
  op_check(opt.window >= 0 && opt.chunk >= 0, "attention", "window and chunk must be >= 0");

  Geometry gm{q.dim(0),
              q.dim(1),
              k.dim(1),
              n_heads,
              n_kv_heads,
              d,
              n_heads / n_kv_heads,
              (q.dim(1) + kBlock - 1) / kBlock,
              q.cols(),
              k.cols(),
              v_hd,
              v.cols(),
              n_heads * v_hd};
  const Mask mask{gm.tk, opt.q_offset, opt.k_offset, opt.window, opt.chunk, opt.causal};
  const float scale = opt.scale;
  const float* alibi = opt.alibi_slopes;
  const int64_t ldt = padded_ld(gm.tk);  // row stride of Kᵀ, Vᵀ, P and score rows
  gm.ck = kv_heads_per_task(gm, ldt, task_threads(gm.batch * gm.hkv));

  Graph& g = current_graph();
  Tensor y = g.empty(Shape{q.dim(0), q.dim(1), gm.ldo}, g.needs_grad({q, k, v}));
  if (y.numel() == 0) return y;
  const bool save = y.requires_grad();
  const int64_t n_tasks = gm.tasks();
  const int nt = task_threads(n_tasks);
  // Row logsumexps (B, Hq, Tq) for backward's recompute of P.
  float* lse = save ? g.alloc(gm.batch * gm.hq * gm.tq) : nullptr;
  // Per thread: Kᵀ of the task's kv heads (wk x ldt), their V rows (Tk x wv),
  // a query block of every query head (kBlock x wq) and one head's
  // scores/probabilities (kBlock x ldt).
  const int64_t fwd_scratch = gm.wk() * ldt + gm.tk * gm.wv() + kBlock * gm.wq() + kBlock * ldt;
  float* scratch = g.alloc(nt * fwd_scratch);
  const int64_t kv_per_blk = (gm.tk + gm.nblk - 1) / gm.nblk;
  {
    const float *qd = q.data(), *kd = k.data(), *vd = v.data();
    float* od = y.data();
    run_tasks(n_tasks, nt, [&](int64_t task, int tid) {
      const int64_t b = task / gm.chunks(), h0 = gm.first_head(task);
      float* kt = scratch + tid * fwd_scratch;
      float* vp = kt + gm.wk() * ldt;
      float* qb = vp + gm.tk * gm.wv();
      float* s = qb + kBlock * gm.wq();
      const TaskRows tr = gm.rows(task);
      pack_transposed(kd + tr.k, gm.ldk, gm.tk, gm.wk(), kt, ldt);
      pack_rows(vd + tr.v, gm.ldv, gm.tk, gm.wv(), vp);
      for (int64_t blk = 0; blk < gm.nblk; ++blk) {
        const int64_t i0 = blk * kBlock, m = std::min(kBlock, gm.tq - i0);
        const float* qrows = qd + tr.q + i0 * gm.ldq;
        float* orows = od + tr.o + i0 * gm.ldo;
        const int64_t m_next = std::min(kBlock, gm.tq - i0 - kBlock);
        if (m_next > 0) {
          prefetch_rows(qrows + kBlock * gm.ldq, gm.ldq, m_next, gm.wq());
          prefetch_rows(orows + kBlock * gm.ldo, gm.ldo, m_next, gm.wo(), true);
        }
        if (task + nt < n_tasks) {  // the next task's K and V, a slice per block
          const TaskRows nx = gm.rows(task + nt);
          const int64_t r0 = blk * kv_per_blk, nr = std::min(kv_per_blk, gm.tk - r0);
          prefetch_rows(kd + nx.k + r0 * gm.ldk, gm.ldk, nr, gm.wk());
          prefetch_rows(vd + nx.v + r0 * gm.ldv, gm.ldv, nr, gm.wv());
          if (blk + 1 == gm.nblk) {
            const int64_t mq = std::min(kBlock, gm.tq);
            prefetch_rows(qd + nx.q, gm.ldq, mq, gm.wq());
            prefetch_rows(od + nx.o, gm.ldo, mq, gm.wo(), true);
          }
        }
        const BlockRanges br(mask, i0, m);
        if (br.empty()) {  // every key masked: zero output
          for (int64_t r = 0; r < m; ++r)
            std::memset(orows + r * gm.ldo, 0, sizeof(float) * size_t(gm.wo()));
          continue;
        }
        const int64_t cl = br.cl, n = br.ch - br.cl;
        pack_rows(qrows, gm.ldq, m, gm.wq(), qb);
        for (int64_t hl = 0; hl < gm.ck * gm.group; ++hl) {
          const int64_t h = h0 + hl, kl = hl / gm.group;
          const float slope = alibi ? alibi[h] : 0.0f;
          // S = scale * Q_blk K_cᵀ, softmax per row, O_blk = P V_c.
          small_gemm<false>(m, n, gm.d, scale, qb + hl * gm.d, gm.wq(), 1,
                            kt + kl * gm.d * ldt + cl, ldt, s, ldt);
          float mx[kBlock], sum[kBlock];
          for (int64_t r = 0; r < m; ++r)
            exp_row(s + r * ldt, n, br.lo[r] - cl, br.hi[r] - cl, slope,
                    float(mask.q_off + i0 + r - mask.k_off - cl), &mx[r], &sum[r]);
          float* oh = orows + hl * gm.dv;
          small_gemm<false>(m, gm.dv, n, 1.0f, s, ldt, 1, vp + cl * gm.wv() + kl * gm.dv, gm.wv(),
                            oh, gm.ldo);
          for (int64_t r = 0; r < m; ++r) {  // O = (exp(S - max) V) / sum
            float* o = oh + r * gm.ldo;
            const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
#pragma omp simd
            for (int64_t c = 0; c < gm.dv; ++c) o[c] *= inv;
          }
          if (save) {  // row logsumexps; 0 for fully masked rows
            const Eigen::Map<Eigen::ArrayXf> sums(sum, m);
            Eigen::Map<Eigen::ArrayXf>(lse + (b * gm.hq + h) * gm.tq + i0, m) =
                Eigen::Map<Eigen::ArrayXf>(mx, m) + (sums > 0.0f).select(sums.log(), 0.0f);
          }
        }
      }
    });
  }
  if (!save) return y;

  g.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    // Each element of dQ, dK and dV is written by exactly one task, so a
    // gradient buffer this op creates (fresh) is overwritten rather than
    // zeroed and accumulated into: no zeroing pass, and no reads of lines that
    // only hold zeros. For attention(x, x, x) only the first of the three is
    // fresh; the task that overwrites its dQ columns adds dK and dV to the
    // same columns after its last block.
    bool q_fresh = false, k_fresh = false, v_fresh = false;
    float* dq = q.requires_grad() ? gg.grad_for_overwrite(q, q_fresh) : nullptr;
    float* dk = k.requires_grad() ? gg.grad_for_overwrite(k, k_fresh) : nullptr;
    float* dv = v.requires_grad() ? gg.grad_for_overwrite(v, v_fresh) : nullptr;
    const bool need_ds = dq || dk;
    const int bnt = task_threads(n_tasks);
    const int64_t heads = gm.ck * gm.group;  // query heads per task
    // Per thread: Kᵀ and Vᵀ of the task's kv heads (wk x ldt, wv x ldt), their
    // K rows (Tk x wk), a query block of Q and dO for every query head
    // (kBlock x wq, kBlock x wo), and one head's P and dP/dS (kBlock x ldt).
    // dK and dV accumulate in contiguous per-task buffers (Tk x wk, Tk x wv),
    // added to the strided gradients once at the end: rows at the
    // projection's stride (often a power of two) would share a few L1 sets
    // and thrash across the many query blocks that update them.
    const int64_t bwd_scratch = (gm.wk() + gm.wv()) * ldt + gm.tk * gm.wk() +
                                kBlock * (gm.wq() + gm.wo()) + 2 * kBlock * ldt +
                                gm.tk * (gm.wk() + gm.wv()) + kBlock * heads;
    float* bscratch = gg.alloc(bnt * bwd_scratch);
    const float *qd = q.data(), *kd = k.data(), *vd = v.data(), *od = y.data();
    run_tasks(n_tasks, bnt, [&](int64_t task, int tid) {
      const int64_t b = task / gm.chunks(), h0 = gm.first_head(task);
      float* kt = bscratch + tid * bwd_scratch;
      float* vt = kt + gm.wk() * ldt;
      float* kp = vt + gm.wv() * ldt;
      float* qb = kp + gm.tk * gm.wk();
      float* dob = qb + kBlock * gm.wq();
      float* pb = dob + kBlock * gm.wo();
      float* dp = pb + kBlock * ldt;
      float* dk_acc = dp + kBlock * ldt;
      float* dv_acc = dk_acc + gm.tk * gm.wk();
      float* dsum = dv_acc + gm.tk * gm.wv();
      if (dk) std::memset(dk_acc, 0, sizeof(float) * size_t(gm.tk * gm.wk()));
      if (dv) std::memset(dv_acc, 0, sizeof(float) * size_t(gm.tk * gm.wv()));
      const TaskRows tr = gm.rows(task);
      pack_transposed(kd + tr.k, gm.ldk, gm.tk, gm.wk(), kt, ldt);
      if (need_ds) pack_transposed(vd + tr.v, gm.ldv, gm.tk, gm.wv(), vt, ldt);
      if (dq) pack_rows(kd + tr.k, gm.ldk, gm.tk, gm.wk(), kp);
      for (int64_t blk = 0; blk < gm.nblk; ++blk) {
        const int64_t i0 = blk * kBlock, m = std::min(kBlock, gm.tq - i0);
        const float* qrows = qd + tr.q + i0 * gm.ldq;
        const float* dorows = dy + tr.o + i0 * gm.ldo;
        const float* orows = od + tr.o + i0 * gm.ldo;
        float* dqrows = dq ? dq + tr.q + i0 * gm.ldq : nullptr;
        const int64_t m_next = std::min(kBlock, gm.tq - i0 - kBlock);
        if (m_next > 0) {
          prefetch_rows(qrows + kBlock * gm.ldq, gm.ldq, m_next, gm.wq());
          prefetch_rows(dorows + kBlock * gm.ldo, gm.ldo, m_next, gm.wo());
          prefetch_rows(orows + kBlock * gm.ldo, gm.ldo, m_next, gm.wo());
          if (dq) prefetch_rows(dqrows + kBlock * gm.ldq, gm.ldq, m_next, gm.wq(), true);
        }
        if (task + bnt < n_tasks) {  // the next task's K, V, dK and dV, a slice per block
          const TaskRows nx = gm.rows(task + bnt);
          const int64_t r0 = blk * kv_per_blk, nr = std::min(kv_per_blk, gm.tk - r0);
          prefetch_rows(kd + nx.k + r0 * gm.ldk, gm.ldk, nr, gm.wk());
          prefetch_rows(vd + nx.v + r0 * gm.ldv, gm.ldv, nr, gm.wv());
          if (dk) prefetch_rows(dk + nx.k + r0 * gm.ldk, gm.ldk, nr, gm.wk(), true);
          if (dv) prefetch_rows(dv + nx.v + r0 * gm.ldv, gm.ldv, nr, gm.wv(), true);
          if (blk + 1 == gm.nblk) {
            const int64_t mq = std::min(kBlock, gm.tq);
            prefetch_rows(qd + nx.q, gm.ldq, mq, gm.wq());
            prefetch_rows(dy + nx.o, gm.ldo, mq, gm.wo());
            prefetch_rows(od + nx.o, gm.ldo, mq, gm.wo());
            if (dq) prefetch_rows(dq + nx.q, gm.ldq, mq, gm.wq(), true);
          }
        }
        const BlockRanges br(mask, i0, m);
        if (br.empty()) {  // every key masked: no gradient
          if (q_fresh)
            for (int64_t r = 0; r < m; ++r)
              std::memset(dqrows + r * gm.ldq, 0, sizeof(float) * size_t(gm.wq()));
          continue;
        }
        const int64_t cl = br.cl, n = br.ch - br.cl;
        pack_rows(qrows, gm.ldq, m, gm.wq(), qb);
        pack_rows(dorows, gm.ldo, m, gm.wo(), dob);
        if (need_ds)  // D = dO · O of every row and head, in one sweep of the block's O rows
          for (int64_t r = 0; r < m; ++r)
            for (int64_t hl = 0; hl < heads; ++hl) {
              using V = Eigen::Map<const Eigen::VectorXf>;
              dsum[r * heads + hl] = V(dob + r * gm.wo() + hl * gm.dv, gm.dv)
                                         .dot(V(orows + r * gm.ldo + hl * gm.dv, gm.dv));
            }
        for (int64_t hl = 0; hl < heads; ++hl) {
          const int64_t h = h0 + hl, kl = hl / gm.group;
          const float slope = alibi ? alibi[h] : 0.0f;
          const float* lse_b = lse + (b * gm.hq + h) * gm.tq + i0;
          const float* qh = qb + hl * gm.d;
          const float* doh = dob + hl * gm.dv;
          // P = exp(scale * Q_blk K_cᵀ + bias - lse), recomputed in L1/L2.
          small_gemm<false>(m, n, gm.d, scale, qh, gm.wq(), 1, kt + kl * gm.d * ldt + cl, ldt, pb,
                            ldt);
          for (int64_t r = 0; r < m; ++r)
            probs_row(pb + r * ldt, n, br.lo[r] - cl, br.hi[r] - cl, slope,
                      float(mask.q_off + i0 + r - mask.k_off - cl), lse_b[r]);
          // dV_c += Pᵀ dO
          if (dv)
            small_gemm<true>(n, gm.dv, m, 1.0f, pb, 1, ldt, doh, gm.wo(),
                             dv_acc + cl * gm.wv() + kl * gm.dv, gm.wv());
          if (!need_ds) continue;
          // dP = dO V_cᵀ, then dS = P * (dP - D) in place with D = rowsum(P * dP)
          // = dO · O per row (FlashAttention-2): a dv-wide dot instead of an
          // n-wide pass. Masked entries have P = 0, so they get dS = 0.
          small_gemm<false>(m, n, gm.dv, 1.0f, doh, gm.wo(), 1, vt + kl * gm.dv * ldt + cl, ldt, dp,
                            ldt);
          for (int64_t r = 0; r < m; ++r) {
            const float* pr = pb + r * ldt;
            float* dr = dp + r * ldt;
            const float dot = dsum[r * heads + hl];
#pragma omp simd
            for (int64_t j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - dot);
          }
          // dQ_blk += scale dS K_c ;  dK_c += scale dSᵀ Q_blk
          const float* kh = kp + cl * gm.wk() + kl * gm.d;
          if (dq && q_fresh)
            small_gemm<false>(m, gm.d, n, scale, dp, ldt, 1, kh, gm.wk(), dqrows + hl * gm.d,
                              gm.ldq);
          else if (dq)
            small_gemm<true>(m, gm.d, n, scale, dp, ldt, 1, kh, gm.wk(), dqrows + hl * gm.d,
                             gm.ldq);
          if (dk)
            small_gemm<true>(n, gm.d, m, scale, dp, 1, ldt, qh, gm.wq(),
                             dk_acc + cl * gm.wk() + kl * gm.d, gm.wk());
        }
      }
      if (dk) store_rows(dk_acc, gm.tk, gm.wk(), dk + tr.k, gm.ldk, k_fresh);
      if (dv) store_rows(dv_acc, gm.tk, gm.wv(), dv + tr.v, gm.ldv, v_fresh);
    });
  });
  return y;
}

}  // namespace bl
