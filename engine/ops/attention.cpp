// Fused attention.
//
// When a gradient is needed, forward keeps the probabilities P of the blocks
// it computed if they take no more memory than q, k and v together (short
// sequences: T = 128 at head_dim 32 keeps 0.75x that); backward then skips
// the score product and the exp (BM_Attention_B32_T128_H4_D32 fwd+bwd, one
// thread: 8.3 -> 7.2 ms). Longer sequences keep only the row logsumexps
// (B, Hq, Tq) and recompute P = exp(S - lse) block by block while it is hot
// in L1 (flash-attention style), so memory stays linear in T.
//
// A task is one batch element and a group of kv heads (all of them when that
// keeps the threads busy; kv_heads_per_task): it packs their K and V rows
// once, then runs blocks of 16 query rows, every query head of the group per
// block, so Q, O and their gradients are read and written in whole-row sweeps.
// Every mask (causal, window, chunk) restricts a query row to one contiguous
// key interval, so a block only computes the union of its rows' intervals
// (the causal upper triangle is skipped but for the diagonal blocks). A
// block's scores are held transposed, one query row per vector lane, so the
// softmax runs down columns with no horizontal reductions. In backward one
// task owns dK/dV of its kv heads and dQ of its query heads: no races.
//
// The products (128 x 16 x 32 and the like) run on a register-tiled kernel
// over packed, L1-friendly copies; a general GEMM spends much of its time
// packing such small operands.
//
// One source for every vector ISA: Highway compiles the kernels below once
// per target (simd/targets.h) and attention() dispatches to the CPU's best
// (or BLOCKLAB_ISA's). A block's 16 lanes are one AVX-512 vector, two AVX2
// vectors, or sixteen scalars; tiles are sized to the target's registers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/attention.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/attention.h"
#include "ops/check.h"
#include "simd/isa.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

// What every target shares: geometry, masks, prefetching (defined once).
#ifndef BL_OPS_ATTENTION_SHARED_
#define BL_OPS_ATTENTION_SHARED_
namespace bl::attn {

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

// rows rows of cols floats at stride ld = 0.
void zero_rows(float* p, int64_t ld, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) std::memset(p + r * ld, 0, sizeof(float) * size_t(cols));
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

// Slice blk (of per_blk rows) of a task's Tk rows of K-like and V-like
// columns: K and V, or dK and dV (write). Spread over the current task's
// blocks, it brings the next task's operands into L2 without flooding it.
void prefetch_kv_slice(const Geometry& gm, const TaskRows& t, int64_t blk, int64_t per_blk,
                       const float* kl, const float* vl, bool write = false) {
  const int64_t r0 = blk * per_blk, nr = std::min(per_blk, gm.tk - r0);
  if (kl) prefetch_rows(kl + t.k + r0 * gm.ldk, gm.ldk, nr, gm.wk(), write);
  if (vl) prefetch_rows(vl + t.v + r0 * gm.ldv, gm.ldv, nr, gm.wv(), write);
}

// kv heads per task. Preferably all of them: a task then reads whole rows of
// Q, K, V and O (for (B, T, H*D) tensors, one contiguous stretch per batch
// element) in sweeps the hardware prefetcher follows, where one head's columns
// are short pieces at a stride. Fewer when that would leave a thread idle or
// the task's packed operands (backward's, the larger) would not fit L2.
int64_t kv_heads_per_task(const Geometry& gm, int threads) {
  for (int64_t ck = gm.hkv; ck > 1; --ck) {
    if (gm.hkv % ck != 0) continue;
    const int64_t tasks = gm.batch * (gm.hkv / ck);
    const int64_t floats = 2 * ck * gm.tk * (gm.d + gm.dv) + 2 * gm.tk * kBlock;
    const bool fits = floats * int64_t(sizeof(float)) <= (int64_t(512) << 10);
    const bool balanced = tasks % threads == 0 || tasks >= 4 * int64_t(threads);
    if (fits && balanced) return ck;
  }
  return 1;
}

// What a forward's tasks read and write (attention() fills it in).
struct Forward {
  Geometry gm;
  Mask mask;
  float scale;
  const float* alibi;
  const float *q, *k, *v;
  float* out;
  bool save, keep_p;
  float *pbuf, *lse;  // kept P (keep_p) or row logsumexps (save && !keep_p)
  const int64_t* p_off;
  int64_t p_head;
  float* scratch;  // fwd_scratch floats per thread
  int64_t fwd_scratch, kv_per_blk, n_tasks;
  int nt;
};

// And a backward's: the forward's inputs plus dO and the gradients (null
// where not needed; *_fresh: overwrite instead of accumulate).
struct Backward {
  Forward f;
  const float* dy;
  float *dq, *dk, *dv;
  bool q_fresh, k_fresh, v_fresh;
  float* scratch;  // bwd_scratch floats per thread
  int64_t bwd_scratch;
  int nt;
};

}  // namespace bl::attn
#endif  // BL_OPS_ATTENTION_SHARED_

#include "simd/rows-inl.h"
#include "simd/vexp-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {

using namespace bl::attn;
using D = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<D>;
using V = hn::Vec<D>;
constexpr int64_t kN = HWY_LANES(float);  // floats per vector
static_assert(kBlock % kN == 0, "a block's lanes are whole vectors");

// ---- Small-matrix products --------------------------------------------------
// C = alpha * A B (+ C) with A(i, l) = a[i * ars + l * acs] (any strides, so
// Aᵀ is free) and B rows contiguous (b[l * ldb + j]). A tile of R rows x one
// or two vectors of columns lives in registers (8 x 32 tiles reach ~110
// GFLOP/s on one Zen 4 core with AVX-512); R fits the target's register file.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_NEON
constexpr int kTileRows = 8;  // 8 x 2 accumulators of 32 registers
#elif HWY_TARGET == HWY_AVX2
constexpr int kTileRows = 6;  // 12 accumulators + 2 B vectors + 1 broadcast of 16
#else
constexpr int kTileRows = 4;
#endif

template <int R, int NV, bool kAcc>
inline void vec_tile(int64_t k, float alpha, const float* a, int64_t ars, int64_t acs,
                     const float* b, int64_t ldb, float* c, int64_t ldc) {
  const D d;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = hn::Zero(d);
  for (int64_t l = 0; l < k; ++l) {
    const float* bl = b + l * ldb;
    const float* al = a + l * acs;
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = hn::LoadU(d, bl + kN * v);
    for (int r = 0; r < R; ++r) {
      const V av = hn::Set(d, al[r * ars]);
      for (int v = 0; v < NV; ++v) acc[r][v] = hn::MulAdd(av, bv[v], acc[r][v]);
    }
  }
  const V va = hn::Set(d, alpha);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* cp = c + r * ldc + kN * v;
      hn::StoreU(kAcc ? hn::MulAdd(va, acc[r][v], hn::LoadU(d, cp)) : hn::Mul(va, acc[r][v]), d,
                 cp);
    }
}

// Column tail narrower than a vector.
template <int R, bool kAcc>
inline void tail_tile(int64_t k, float alpha, const float* a, int64_t ars, int64_t acs,
                      const float* b, int64_t ldb, float* c, int64_t ldc, int64_t wn) {
  float acc[R][kBlock] = {};
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
  if (wn == 2 * kN)
    vec_tile<R, 2, kAcc>(k, alpha, a, ars, acs, b, ldb, c, ldc);
  else if (wn == kN)
    vec_tile<R, 1, kAcc>(k, alpha, a, ars, acs, b, ldb, c, ldc);
  else
    tail_tile<R, kAcc>(k, alpha, a, ars, acs, b, ldb, c, ldc, wn);
}

// A tile of `rows` (<= kTileRows) rows, its row count a template argument.
template <bool kAcc, int R = 1>
inline void tile_rows(int64_t rows, int64_t wn, int64_t k, float alpha, const float* a, int64_t ars,
                      int64_t acs, const float* b, int64_t ldb, float* c, int64_t ldc) {
  if constexpr (R < kTileRows) {
    if (rows == R) return tile<R, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
    return tile_rows<kAcc, R + 1>(rows, wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
  } else {
    return tile<kTileRows, kAcc>(wn, k, alpha, a, ars, acs, b, ldb, c, ldc);
  }
}

// C (m x n) = alpha * A (m x k) B (k x n), plus C when kAcc.
template <bool kAcc>
void small_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t ars,
                int64_t acs, const float* b, int64_t ldb, float* c, int64_t ldc) {
  // Column panels outermost: the k x 2-vector panel of B stays in L1 across row tiles.
  for (int64_t j = 0; j < n;) {
    const int64_t wn = n - j >= 2 * kN ? 2 * kN : n - j >= kN ? kN : n - j;
    for (int64_t i = 0; i < m; i += kTileRows)
      tile_rows<kAcc>(std::min<int64_t>(kTileRows, m - i), wn, k, alpha, a + i * ars, ars, acs,
                      b + j, ldb, c + i * ldc + j, ldc);
    j += wn;
  }
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

// n rows of d floats at stride ld_src as one contiguous block: the rows
// themselves when they already are one (q, k, v from separate projections,
// a task holding every head), else a copy in dst.
const float* packed_rows(const float* src, int64_t ld_src, int64_t n, int64_t d, float* dst) {
  if (ld_src == d) return src;
  pack_rows(src, ld_src, n, d, dst);
  return dst;
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

// ---- Scores with one query row per vector lane ---------------------------
// A block's scores are kept transposed, St (n x 16): row j holds key cl + j
// against the block's 16 query rows, one per lane. The softmax then runs down
// the columns with plain vector arithmetic: a row's max and sum are lanes of
// a vector, never horizontal reductions, and consecutive key rows are
// independent work. Lanes are independent, so each kernel below runs over the
// 16 lanes one vector (16 / kN of them) at a time.

constexpr float kInf = std::numeric_limits<float>::infinity();

// Which lanes (query rows) of a block may see each key row, and their bias.
struct Lanes {
  int32_t lo[kBlock] = {}, hi[kBlock] = {};  // allowed key rows [lo, hi) of each lane,
                                             // relative to cl; empty past m
  float base[kBlock] = {};                   // q_pos - k_pos of key row 0, per lane (ALiBi)
  float slope = 0.0f;

  Lanes(const BlockRanges& br, const Mask& mask, int64_t i0, int64_t m) {
    for (int64_t l = 0; l < m; ++l) {
      lo[l] = int32_t(br.lo[l] - br.cl);
      hi[l] = int32_t(br.hi[l] - br.cl);  // Mask::range keeps hi >= lo
      base[l] = float(mask.q_off + i0 + l - mask.k_off - br.cl);
    }
  }
};

// The lanes [p, p + kN) of Lanes in registers.
struct LanePart {
  hn::Vec<DI> lo_1, hi;  // lo - 1: signed compares are < and == only
  V base, slope;
  bool alibi;
  LanePart(const Lanes& ln, int64_t p)
      : lo_1(hn::Sub(hn::LoadU(DI(), ln.lo + p), hn::Set(DI(), 1))),
        hi(hn::LoadU(DI(), ln.hi + p)),
        base(hn::LoadU(D(), ln.base + p)),
        slope(hn::Set(D(), ln.slope)),
        alibi(ln.slope != 0.0f) {}
  hn::Mask<D> allowed(int64_t j) const {
    const auto jv = hn::Set(DI(), int32_t(j));
    return hn::RebindMask(D(), hn::And(hn::Lt(lo_1, jv), hn::Lt(jv, hi)));
  }
  // Key row j of St plus the ALiBi bias -slope * (q_pos - k_pos).
  V scores(const float* st, int64_t j, int64_t p) const {
    const V s = hn::LoadU(D(), st + j * kBlock + p);
    return alibi ? hn::NegMulAdd(slope, hn::Sub(base, hn::Set(D(), float(j))), s) : s;
  }
};

// In place over St (n x 16): P = exp(S + bias - max) on each lane's allowed
// keys, 0 elsewhere, unnormalised (the caller scales the output rows by
// 1 / sum). max = 0 and sum = 0 in lanes with no allowed key.
inline void softmax_lanes(float* st, int64_t n, const Lanes& ln, float* max_out, float* sum_out) {
  const D d;
  for (int64_t p = 0; p < kBlock; p += kN) {
    const LanePart lp(ln, p);
    const V ninf = hn::Set(d, -kInf);
    V mx = ninf;
    for (int64_t j = 0; j < n; ++j) {
      const V s = hn::IfThenElse(lp.allowed(j), lp.scores(st, j, p), ninf);
      mx = hn::IfThenElse(hn::Lt(mx, s), s, mx);
    }
    mx = hn::IfThenZeroElse(hn::Eq(mx, ninf), mx);
    V sum0 = hn::Zero(d), sum1 = hn::Zero(d);  // two chains: the adds do not wait on each other
    int64_t j = 0;
    for (; j + 1 < n; j += 2) {
      const V p0 = hn::IfThenElseZero(lp.allowed(j), Exp(d, hn::Sub(lp.scores(st, j, p), mx)));
      const V p1 =
          hn::IfThenElseZero(lp.allowed(j + 1), Exp(d, hn::Sub(lp.scores(st, j + 1, p), mx)));
      hn::StoreU(p0, d, st + j * kBlock + p);
      hn::StoreU(p1, d, st + (j + 1) * kBlock + p);
      sum0 = hn::Add(sum0, p0);
      sum1 = hn::Add(sum1, p1);
    }
    if (j < n) {
      const V p0 = hn::IfThenElseZero(lp.allowed(j), Exp(d, hn::Sub(lp.scores(st, j, p), mx)));
      hn::StoreU(p0, d, st + j * kBlock + p);
      sum0 = hn::Add(sum0, p0);
    }
    hn::StoreU(mx, d, max_out + p);
    hn::StoreU(hn::Add(sum0, sum1), d, sum_out + p);
  }
}

// Backward's recompute in place over St: P = exp(S + bias - lse), 0 where masked.
inline void probs_lanes(float* st, int64_t n, const Lanes& ln, const float* lse) {
  const D d;
  for (int64_t p = 0; p < kBlock; p += kN) {
    const LanePart lp(ln, p);
    const V l = hn::LoadU(d, lse + p);
    for (int64_t j = 0; j < n; ++j)
      hn::StoreU(hn::IfThenElseZero(lp.allowed(j), Exp(d, hn::Sub(lp.scores(st, j, p), l))), d,
                 st + j * kBlock + p);
  }
}

// qt (cols x 16) = transpose of m <= 16 rows of cols floats at stride ld; the
// lanes past m are zero.
inline void pack_lanes(const float* src, int64_t ld, int64_t m, int64_t cols, float* qt) {
  if (m < kBlock) std::memset(qt, 0, sizeof(float) * size_t(cols * kBlock));
  pack_transposed(src, ld, m, cols, qt, kBlock);
}

// St (n x 16) /= sum per lane (0 where sum is 0), and a copy of each row
// streamed to pk past the caches: kept probabilities are read back only in
// backward, after the rest of the forward has evicted them, so fetching their
// lines for ownership first would only double the memory traffic. pk is
// 64-byte aligned (arena memory, rows of 16 floats); ordered by
// hwy::FlushStream().
inline void normalise_and_keep(float* st, int64_t n, const float* sum, float* pk) {
  const D d;
  for (int64_t p = 0; p < kBlock; p += kN) {
    const V s = hn::LoadU(d, sum + p);
    const V inv = hn::IfThenElseZero(hn::Lt(hn::Zero(d), s), hn::Div(hn::Set(d, 1.0f), s));
    for (int64_t j = 0; j < n; ++j) {
      const V r = hn::Mul(hn::LoadU(d, st + j * kBlock + p), inv);
      hn::StoreU(r, d, st + j * kBlock + p);
      hn::Stream(r, d, pk + j * kBlock + p);
    }
  }
}

// dSt = Pt * (dPt - D) in place over dPt (n x 16), D per lane.
inline void scores_grad(float* dpt, const float* pt, int64_t n, const float* dl) {
  const D d;
  for (int64_t p = 0; p < kBlock; p += kN) {
    const V dv = hn::LoadU(d, dl + p);
    for (int64_t j = 0; j < n; ++j) {
      float* dr = dpt + j * kBlock + p;
      hn::StoreU(hn::Mul(hn::LoadU(d, pt + j * kBlock + p), hn::Sub(hn::LoadU(d, dr), dv)), d, dr);
    }
  }
}

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

void AttentionForward(const Forward& f) {
  const Geometry& gm = f.gm;
  const Mask& mask = f.mask;
  const float scale = f.scale;
  const float* alibi = f.alibi;
  const float *qd = f.q, *kd = f.k, *vd = f.v;
  float* od = f.out;
  const bool save = f.save, keep_p = f.keep_p;
  float *pbuf = f.pbuf, *lse = f.lse, *scratch = f.scratch;
  const int64_t* p_off = f.p_off;
  const int64_t p_head = f.p_head, fwd_scratch = f.fwd_scratch, kv_per_blk = f.kv_per_blk;
  const int64_t n_tasks = f.n_tasks, heads = gm.ck * gm.group;  // query heads per task
  const int nt = f.nt;
  run_tasks(n_tasks, nt, [&](int64_t task, int tid) HWY_ATTR {
    const int64_t b = task / gm.chunks(), h0 = gm.first_head(task);
    float* kbuf = scratch + tid * fwd_scratch;
    float* vbuf = kbuf + gm.tk * gm.wk();
    float* qt = vbuf + gm.tk * gm.wv();
    float* st = qt + gm.wq() * kBlock;
    const TaskRows tr = gm.rows(task);
    const float* kp = packed_rows(kd + tr.k, gm.ldk, gm.tk, gm.wk(), kbuf);
    const float* vp = packed_rows(vd + tr.v, gm.ldv, gm.tk, gm.wv(), vbuf);
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
        prefetch_kv_slice(gm, nx, blk, kv_per_blk, kd, vd);
        if (blk + 1 == gm.nblk) {
          const int64_t mq = std::min(kBlock, gm.tq);
          prefetch_rows(qd + nx.q, gm.ldq, mq, gm.wq());
          prefetch_rows(od + nx.o, gm.ldo, mq, gm.wo(), true);
        }
      }
      const BlockRanges br(mask, i0, m);
      if (br.empty()) {  // every key masked: zero output
        zero_rows(orows, gm.ldo, m, gm.wo());
        continue;
      }
      const int64_t cl = br.cl, n = br.ch - br.cl;
      Lanes ln(br, mask, i0, m);
      pack_lanes(qrows, gm.ldq, m, gm.wq(), qt);
      for (int64_t hl = 0; hl < heads; ++hl) {
        const int64_t h = h0 + hl, kl = hl / gm.group;
        ln.slope = alibi ? alibi[h] : 0.0f;
        // St = scale K_c Q_blkᵀ, softmax down its columns, O_blk = P V_c.
        small_gemm<false>(n, kBlock, gm.d, scale, kp + cl * gm.wk() + kl * gm.d, gm.wk(), 1,
                          qt + hl * gm.d * kBlock, kBlock, st, kBlock);
        float mx[kBlock], sum[kBlock];
        softmax_lanes(st, n, ln, mx, sum);
        float* oh = orows + hl * gm.dv;
        if (keep_p) {  // P = St / sum, kept for backward; O = P V
          // normalised in L1, a copy streamed out
          normalise_and_keep(st, n, sum, pbuf + (b * gm.hq + h) * p_head + p_off[blk]);
          small_gemm<false>(m, gm.dv, n, 1.0f, st, 1, kBlock, vp + cl * gm.wv() + kl * gm.dv,
                            gm.wv(), oh, gm.ldo);
          continue;
        }
        small_gemm<false>(m, gm.dv, n, 1.0f, st, 1, kBlock, vp + cl * gm.wv() + kl * gm.dv, gm.wv(),
                          oh, gm.ldo);
        for (int64_t r = 0; r < m; ++r) {  // O = (exp(S - max) V) / sum
          float* o = oh + r * gm.ldo;
          const float f = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
#pragma omp simd
          for (int64_t c = 0; c < gm.dv; ++c) o[c] *= f;
        }
        if (save) {  // row logsumexps; 0 for fully masked rows
          float* lr = lse + (b * gm.hq + h) * gm.tq + i0;
          for (int64_t r = 0; r < m; ++r) lr[r] = mx[r] + (sum[r] > 0.0f ? std::log(sum[r]) : 0.0f);
        }
      }
    }
    if (keep_p) hwy::FlushStream();  // P visible to backward on any thread
  });
}

void AttentionBackward(const Backward& bw) {
  const Forward& f = bw.f;
  const Geometry& gm = f.gm;
  const Mask& mask = f.mask;
  const float scale = f.scale;
  const float* alibi = f.alibi;
  const float *qd = f.q, *kd = f.k, *vd = f.v, *od = f.out, *dy = bw.dy;
  const bool keep_p = f.keep_p;
  const float *pbuf = f.pbuf, *lse = f.lse;
  const int64_t* p_off = f.p_off;
  const int64_t p_head = f.p_head, kv_per_blk = f.kv_per_blk, n_tasks = f.n_tasks;
  const int64_t heads = gm.ck * gm.group, bwd_scratch = bw.bwd_scratch;
  float *dq = bw.dq, *dk = bw.dk, *dv = bw.dv, *bscratch = bw.scratch;
  const bool q_fresh = bw.q_fresh, k_fresh = bw.k_fresh, v_fresh = bw.v_fresh;
  const bool need_ds = dq || dk;
  const int bnt = bw.nt;
  run_tasks(n_tasks, bnt, [&](int64_t task, int tid) HWY_ATTR {
    const int64_t b = task / gm.chunks(), h0 = gm.first_head(task);
    float* kbuf = bscratch + tid * bwd_scratch;
    float* vbuf = kbuf + gm.tk * gm.wk();
    float* qb = vbuf + gm.tk * gm.wv();
    float* qt = qb + kBlock * gm.wq();
    float* dob = qt + kBlock * gm.wq();
    float* dot = dob + kBlock * gm.wo();
    float* pt = dot + kBlock * gm.wo();
    float* dpt = pt + gm.tk * kBlock;
    float* dk_acc = dpt + gm.tk * kBlock;
    float* dv_acc = dk_acc + gm.tk * gm.wk();
    float* dsum = dv_acc + gm.tk * gm.wv();
    if (dk) std::memset(dk_acc, 0, sizeof(float) * size_t(gm.tk * gm.wk()));
    if (dv) std::memset(dv_acc, 0, sizeof(float) * size_t(gm.tk * gm.wv()));
    const TaskRows tr = gm.rows(task);
    const float* kp = packed_rows(kd + tr.k, gm.ldk, gm.tk, gm.wk(), kbuf);
    const float* vp = need_ds ? packed_rows(vd + tr.v, gm.ldv, gm.tk, gm.wv(), vbuf) : vbuf;
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
        prefetch_kv_slice(gm, nx, blk, kv_per_blk, kd, vd);
        prefetch_kv_slice(gm, nx, blk, kv_per_blk, dk, dv, true);
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
        if (q_fresh) zero_rows(dqrows, gm.ldq, m, gm.wq());
        continue;
      }
      const int64_t cl = br.cl, n = br.ch - br.cl;
      Lanes ln(br, mask, i0, m);
      const float* qr = packed_rows(qrows, gm.ldq, m, gm.wq(), qb);
      pack_lanes(qrows, gm.ldq, m, gm.wq(), qt);
      const float* dor = packed_rows(dorows, gm.ldo, m, gm.wo(), dob);
      if (need_ds) {
        pack_lanes(dorows, gm.ldo, m, gm.wo(), dot);
        // D = dO · O of every row and head, in one sweep of the block's O rows.
        std::memset(dsum, 0, sizeof(float) * size_t(heads * kBlock));
        for (int64_t r = 0; r < m; ++r)
          for (int64_t hl = 0; hl < heads; ++hl)
            dsum[hl * kBlock + r] =
                RowDot(dor + r * gm.wo() + hl * gm.dv, orows + r * gm.ldo + hl * gm.dv, gm.dv);
      }
      for (int64_t hl = 0; hl < heads; ++hl) {
        const int64_t h = h0 + hl, kl = hl / gm.group;
        ln.slope = alibi ? alibi[h] : 0.0f;
        const float* kh = kp + cl * gm.wk() + kl * gm.d;
        const float* vh = vp + cl * gm.wv() + kl * gm.dv;
        const float* pb = pt;
        if (keep_p) {
          pb = pbuf + (b * gm.hq + h) * p_head + p_off[blk];
        } else {  // Pt = exp(scale K_c Q_blkᵀ + bias - lse), recomputed in L1
          float lse_l[kBlock] = {};
          const float* lse_b = lse + (b * gm.hq + h) * gm.tq + i0;
          for (int64_t l = 0; l < m; ++l) lse_l[l] = lse_b[l];
          small_gemm<false>(n, kBlock, gm.d, scale, kh, gm.wk(), 1, qt + hl * gm.d * kBlock, kBlock,
                            pt, kBlock);
          probs_lanes(pt, n, ln, lse_l);
        }
        // dV_c += P_blkᵀ dO_blk
        if (dv)
          small_gemm<true>(n, gm.dv, m, 1.0f, pb, kBlock, 1, dor + hl * gm.dv, gm.wo(),
                           dv_acc + cl * gm.wv() + kl * gm.dv, gm.wv());
        if (!need_ds) continue;
        // dPt = V_c dO_blkᵀ, then dS = P * (dP - D) in place with D = rowsum(P * dP)
        // = dO · O per row (FlashAttention-2): a dv-wide dot instead of an
        // n-wide pass. Masked entries have P = 0, so they get dS = 0.
        small_gemm<false>(n, kBlock, gm.dv, 1.0f, vh, gm.wv(), 1, dot + hl * gm.dv * kBlock, kBlock,
                          dpt, kBlock);
        scores_grad(dpt, pb, n, dsum + hl * kBlock);
        // dQ_blk += scale dS K_c ;  dK_c += scale dSᵀ Q_blk
        if (dq && q_fresh)
          small_gemm<false>(m, gm.d, n, scale, dpt, 1, kBlock, kh, gm.wk(), dqrows + hl * gm.d,
                            gm.ldq);
        else if (dq)
          small_gemm<true>(m, gm.d, n, scale, dpt, 1, kBlock, kh, gm.wk(), dqrows + hl * gm.d,
                           gm.ldq);
        if (dk)
          small_gemm<true>(n, gm.d, m, scale, dpt, kBlock, 1, qr + hl * gm.d, gm.wq(),
                           dk_acc + cl * gm.wk() + kl * gm.d, gm.wk());
      }
    }
    if (dk) store_rows(dk_acc, gm.tk, gm.wk(), dk + tr.k, gm.ldk, k_fresh);
    if (dv) store_rows(dv_acc, gm.tk, gm.wv(), dv + tr.v, gm.ldv, v_fresh);
  });
}

}  // namespace
}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

namespace {
HWY_EXPORT(AttentionForward);
HWY_EXPORT(AttentionBackward);
}  // namespace

using namespace attn;

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
  gm.ck = kv_heads_per_task(gm, task_threads(gm.batch * gm.hkv));

  Graph& g = current_graph();
  Tensor y = g.empty(Shape{q.dim(0), q.dim(1), gm.ldo}, g.needs_grad({q, k, v}));
  if (y.numel() == 0) return y;
  const bool save = y.requires_grad();
  const int64_t n_tasks = gm.tasks();
  const int64_t heads = gm.ck * gm.group;  // query heads per task
  const int nt = task_threads(n_tasks);
  // Backward needs P. Kept from the forward when it is no larger than q, k
  // and v together (short sequences, gpt-tiny's T = 128 among them): block
  // blk of head (b, h) at pbuf + (b * hq + h) * p_head + p_off[blk], n x 16.
  // Longer ones keep the row logsumexps (B, Hq, Tq) and recompute P.
  int64_t* p_off = g.alloc_as<int64_t>(gm.nblk + 1);
  p_off[0] = 0;
  for (int64_t blk = 0; blk < gm.nblk; ++blk) {
    const BlockRanges br(mask, blk * kBlock, std::min(kBlock, gm.tq - blk * kBlock));
    p_off[blk + 1] = p_off[blk] + (br.empty() ? 0 : (br.ch - br.cl) * kBlock);
  }
  const int64_t p_head = p_off[gm.nblk];
  const bool keep_p = save && gm.batch * gm.hq * p_head <= q.numel() + k.numel() + v.numel();
  float* pbuf = keep_p ? g.alloc(gm.batch * gm.hq * p_head) : nullptr;
  float* lse = save && !keep_p ? g.alloc(gm.batch * gm.hq * gm.tq) : nullptr;
  // Per thread: the K and V rows of the task's kv heads (Tk x wk, Tk x wv),
  // a query block of every query head transposed (wq x 16) and one head's
  // St (Tk x 16).
  const int64_t fwd_scratch = gm.tk * (gm.wk() + gm.wv()) + gm.wq() * kBlock + gm.tk * kBlock;
  float* scratch = g.alloc(nt * fwd_scratch);
  const int64_t kv_per_blk = (gm.tk + gm.nblk - 1) / gm.nblk;
  const Forward fw{gm,       mask,        scale,      alibi,   q.data(), k.data(), v.data(),
                   y.data(), save,        keep_p,     pbuf,    lse,      p_off,    p_head,
                   scratch,  fwd_scratch, kv_per_blk, n_tasks, nt};
  BL_DISPATCH(AttentionForward)(fw);
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
    const int bnt = task_threads(n_tasks);
    // Per thread: the K and V rows of the task's kv heads (Tk x wk, Tk x wv);
    // a query block of Q and dO for every query head, as rows (16 x wq,
    // 16 x wo) and transposed (wq x 16, wo x 16); one head's Pt and dPt/dSt
    // (Tk x 16); dO · O per row and head (heads x 16). dK and dV accumulate in
    // contiguous per-task buffers (Tk x wk, Tk x wv), added to the strided
    // gradients once at the end: rows at the projection's stride (often a
    // power of two) would share a few L1 sets and thrash across the many query
    // blocks that update them.
    const int64_t bwd_scratch = 2 * gm.tk * (gm.wk() + gm.wv()) + 2 * kBlock * (gm.wq() + gm.wo()) +
                                2 * gm.tk * kBlock + heads * kBlock;
    const Backward bw{
        fw,          dy, dq, dk, dv, q_fresh, k_fresh, v_fresh, gg.alloc(bnt * bwd_scratch),
        bwd_scratch, bnt};
    BL_DISPATCH(AttentionBackward)(bw);
  });
  return y;
}

}  // namespace bl
#endif  // HWY_ONCE
