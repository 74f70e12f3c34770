// One source, compiled once per vector ISA by Highway (see simd/targets.h);
// the tile shape follows the target's register file.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tensor/gemm_kernel.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "simd/isa.h"
#include "tensor/gemm_kernel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {

using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
constexpr int64_t kN = HWY_LANES(float);  // floats per vector
constexpr int64_t kNR = 2 * kN;           // columns per micro-tile: two vectors
// Rows per micro-tile: 2 * kMR accumulators + 2 B vectors + 1 broadcast must
// fit the register file (32 registers with AVX-512 and NEON, 16 with AVX2).
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int64_t kMR = 14;
#elif HWY_TARGET == HWY_AVX2
constexpr int64_t kMR = 6;
#elif HWY_TARGET == HWY_NEON
constexpr int64_t kMR = 12;
#else
constexpr int64_t kMR = 4;
#endif
constexpr int64_t kKC = 512;  // longest k-block: fewer passes over C beat an L1-sized B panel
constexpr int64_t kMC = 8 * kMR;

// op(B)[k0 : k0+kc, 0 : n] as panels of kNR columns, each kc rows of kNR
// floats; the columns past n are zero so the kernel never needs a mask.
void pack_b(bool tb, const float* b, int64_t ldb, int64_t k0, int64_t kc, int64_t n, float* dst) {
  const D d;
  if (!tb) {
    // Row by row, so the source is read once, front to back.
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = b + (k0 + k) * ldb;
      int64_t j0 = 0;
      for (; j0 + kNR <= n; j0 += kNR) {
        float* t = dst + (j0 / kNR) * kc * kNR + k * kNR;
        hn::StoreU(hn::LoadU(d, s + j0), d, t);
        hn::StoreU(hn::LoadU(d, s + j0 + kN), d, t + kN);
      }
      if (j0 < n) {
        float* t = dst + (j0 / kNR) * kc * kNR + k * kNR;
        for (int64_t j = 0; j < kNR; ++j) t[j] = j0 + j < n ? s[j0 + j] : 0.0f;
      }
    }
    return;
  }
  // op(B)[k][j] = b[j * ldb + k]: each source row is a destination column.
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t nr = std::min<int64_t>(kNR, n - j0);
    float* t = dst + (j0 / kNR) * kc * kNR;
    if (nr < kNR)
      for (int64_t k = 0; k < kc; ++k) std::fill(t + k * kNR + nr, t + (k + 1) * kNR, 0.0f);
    for (int64_t j = 0; j < nr; ++j) {
      const float* s = b + (j0 + j) * ldb + k0;
      for (int64_t k = 0; k < kc; ++k) t[k * kNR + j] = s[k];
    }
  }
}

struct Tile {
  float* c;
  int64_t ldc;
  int64_t as, bs;  // A micro-panel: k-stride (op(A) = Aᵀ) or row stride; B panel k-stride
  int64_t cols;    // valid columns of the tile (kNR for a full one)
  float alpha, beta;
  const float* bias;  // added to every row (columns from the tile's first), or null
  const float* gate;  // last k-block: C = (sum) ∘ gate elementwise (rows at stride ldg), or null
  int64_t ldg;
  const float* res;  // first k-block: added like the bias (rows at stride ldr), or null
  int64_t ldr;
};

// A block of op(A) = A whose rows are a multiple of 2 KiB apart, copied with a
// padded stride so a micro-tile's rows cannot alias L1 sets (op(A) = Aᵀ and
// other strides are read in place).
constexpr int64_t kLdp = kKC + 16;       // padded row stride of packed A
constexpr int64_t kPanelN = kMR * kLdp;  // floats per packed A micro-panel
constexpr int64_t kPackedA = (kMC / kMR) * kPanelN;

void pack_a(const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
            float* dst) {
  for (int64_t i = 0; i < mc; ++i)
    std::copy_n(a + (i0 + i) * lda + k0, kc, dst + (i / kMR) * kPanelN + (i % kMR) * kLdp);
}

// A block of op(A) = Aᵀ as micro-panels of kc k-rows of kMR floats each
// (k-stride kMR; rows past mc are zero): where a tile's k-row is shorter than
// a cache line (AVX2's 6 floats), reading Aᵀ in place would use a third of
// every line it fetches.
void pack_at(const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
             float* dst) {
  for (int64_t ir = 0; ir < mc; ir += kMR) {
    const int64_t mr = std::min<int64_t>(kMR, mc - ir);
    float* p = dst + (ir / kMR) * kPanelN;
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = a + (k0 + k) * lda + i0 + ir;
      for (int64_t i = 0; i < kMR; ++i) p[k * kMR + i] = i < mr ? s[i] : 0.0f;
    }
  }
}

// Whether this target packs op(A) = Aᵀ (see pack_at) and op(B) = B for Aᵀ B
// instead of reading them in place: AVX2's 6-float k-rows use 24 bytes of a
// 64-byte line; AVX-512's 14 floats (56 bytes) read in place won (README).
constexpr bool kPackTransposedA = kMR * int64_t(sizeof(float)) < 48;

// Starts loading the cache line at p into L2 (prefetcht1).
inline void prefetch_l2(const void* p) {
  __builtin_prefetch(p, 0, 2);
}

// Prefetches a strided region into L2 a few cache lines at a time: `rows`
// segments of `len` floats at stride ld. Spread over the kernel calls of the
// current block, it brings the next block's operands in while this one
// computes, so packing copies and in-place reads hit L2 instead of waiting on
// L3 or memory.
class Prefetcher {
 public:
  void reset(const float* p, int64_t rows, int64_t len, int64_t ld, int64_t calls) {
    p_ = p;
    rows_ = p && len > 0 ? rows : 0;
    len_ = len;
    ld_ = ld;
    r_ = 0;
    line_ = first_line(0);
    const int64_t lines = rows_ * ((len + 15) / 16 + 1);
    per_call_ = calls > 0 ? (lines + calls - 1) / calls : lines;
  }
  void step() {
    for (int64_t i = 0; i < per_call_ && r_ < rows_; ++i) {
      prefetch_l2(reinterpret_cast<const char*>(line_ * 64));
      if (++line_ > last_line(r_)) line_ = first_line(++r_);
    }
  }

 private:
  uintptr_t first_line(int64_t r) const { return reinterpret_cast<uintptr_t>(p_ + r * ld_) / 64; }
  uintptr_t last_line(int64_t r) const {
    return (reinterpret_cast<uintptr_t>(p_ + r * ld_ + len_) - 1) / 64;
  }
  const float* p_ = nullptr;
  int64_t rows_ = 0, len_ = 0, ld_ = 0, r_ = 0, per_call_ = 0;
  uintptr_t line_ = 0;
};

// Loads the tile's two vectors of a row: whole vectors on a full tile, masked
// ones (zero past the valid columns) on the right edge.
struct RowLoader {
  hn::Mask<D> m0, m1;
  bool full;
  explicit RowLoader(int64_t cols)
      : m0(hn::FirstN(D(), size_t(std::clamp<int64_t>(cols, 0, kN)))),
        m1(hn::FirstN(D(), size_t(std::clamp<int64_t>(cols - kN, 0, kN)))),
        full(cols >= kNR) {}
  V lo(const float* p) const { return full ? hn::LoadU(D(), p) : hn::MaskedLoad(m0, D(), p); }
  V hi(const float* p) const {
    return full ? hn::LoadU(D(), p + kN) : hn::MaskedLoad(m1, D(), p + kN);
  }
  void store(V r0, V r1, float* p) const {
    if (full) {
      hn::StoreU(r0, D(), p);
      hn::StoreU(r1, D(), p + kN);
    } else {
      hn::BlendedStore(r0, m0, D(), p);
      hn::BlendedStore(r1, m1, D(), p + kN);
    }
  }
};

// One MR x kNR tile of C from kc steps of an A micro-panel and a B panel.
template <int MR, bool TA>
void micro_kernel(int64_t kc, const float* ap, const float* bp, const Tile& t) {
  const D d;
  const int64_t as = t.as, bs = t.bs;
  V acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    acc0[i] = acc1[i] = hn::Zero(d);
    // The tile of C (and the gate) is read at the end; start fetching it now
    // (from L3 or memory on wide outputs), so the epilogue does not stall on
    // it. Into L2, not L1: at a 2 KiB row stride these lines share a few L1
    // sets and would evict the A and B lines the k-loop is reading (the FFN's
    // gated 4096 x 512 x 128 product: 6.1 -> 5.7 ms in gpt-tiny).
    for (int64_t off = 0; off < kNR; off += 16) {
      prefetch_l2(t.c + i * t.ldc + off);
      if (t.gate) prefetch_l2(t.gate + i * t.ldg + off);
      if (t.res) prefetch_l2(t.res + i * t.ldr + off);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const V b0 = hn::LoadU(d, bp + k * bs);
    const V b1 = hn::LoadU(d, bp + k * bs + kN);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V av = hn::Set(d, TA ? ap[k * as + i] : ap[i * as + k]);
      acc0[i] = hn::MulAdd(av, b0, acc0[i]);
      acc1[i] = hn::MulAdd(av, b1, acc1[i]);
    }
  }
  // Locals: stores to C could alias t as far as the compiler knows.
  float* const c = t.c;
  const int64_t ldc = t.ldc;
  const RowLoader row(t.cols);
  const bool add_c = t.beta != 0.0f;
  const V va = hn::Set(d, t.alpha), vb = hn::Set(d, t.beta);
  const V bias0 = t.bias ? row.lo(t.bias) : hn::Zero(d);
  const V bias1 = t.bias ? row.hi(t.bias) : hn::Zero(d);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    float* cr = c + i * ldc;
    V r0 = hn::MulAdd(acc0[i], va, bias0), r1 = hn::MulAdd(acc1[i], va, bias1);
    if (add_c) {
      r0 = hn::MulAdd(vb, row.lo(cr), r0);
      r1 = hn::MulAdd(vb, row.hi(cr), r1);
    }
    if (t.res) {
      const float* rr = t.res + i * t.ldr;
      r0 = hn::Add(r0, row.lo(rr));
      r1 = hn::Add(r1, row.hi(rr));
    }
    if (t.gate) {  // beta is 0 overall, so C held only earlier k-blocks' partial sums
      const float* gr = t.gate + i * t.ldg;
      r0 = hn::Mul(r0, row.lo(gr));
      r1 = hn::Mul(r1, row.hi(gr));
    }
    row.store(r0, r1, cr);
  }
}

using Kernel = void (*)(int64_t, const float*, const float*, const Tile&);

template <bool TA, int... R>
constexpr std::array<Kernel, sizeof...(R)> kernels(std::integer_sequence<int, R...>) {
  return {&micro_kernel<R + 1, TA>...};
}
constexpr auto kKernelsN = kernels<false>(std::make_integer_sequence<int, kMR>{});
constexpr auto kKernelsT = kernels<true>(std::make_integer_sequence<int, kMR>{});

}  // namespace

bool HasKernel(bool trans_a) {
  if (HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128) return false;
  // AVX2 leaves op(A) = Aᵀ (weight gradients, no epilogue to fuse) to
  // OpenBLAS's Haswell kernel, 5-14% faster there even with Aᵀ packed
  // (BM_GemmWeightGradTN, 1 thread; 1.6-2.8x slower read in place). Forward
  // and input-gradient products are within 3% of it and fuse the epilogues.
  return HWY_TARGET != HWY_AVX2 || !trans_a;
}
int64_t TileRows() {
  return kMR;
}
int64_t PanelCols() {
  return kNR;
}

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
          const float* bias, const float* gate, int64_t ldg, const float* res, int64_t ldr) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] = ((beta == 0.0f ? 0.0f : beta * c[i * ldc + j]) + (bias ? bias[j] : 0.0f) +
                          (res ? res[i * ldr + j] : 0.0f)) *
                         (gate ? gate[i * ldg + j] : 1.0f);
    return;
  }
  const auto& table = trans_a ? kKernelsT : kKernelsN;
  const int64_t panels = (n + kNR - 1) / kNR;
  // Grow to the largest block once, then stay: no allocation in a warm step.
  thread_local std::vector<float> packed_b, packed_a = std::vector<float>(size_t(kPackedA));
  if (packed_b.size() < size_t(panels * kKC * kNR)) packed_b.resize(size_t(panels * kKC * kNR));
  // Equal k-blocks of at most kKC: C is read and written once per block.
  const int64_t kstep = (k + (k + kKC - 1) / kKC - 1) / ((k + kKC - 1) / kKC);
  // Regions of op(A) and op(B) as (start, rows, row length) in memory.
  auto a_region = [&](int64_t i0, int64_t mc, int64_t k0, int64_t kc, Prefetcher& pf,
                      int64_t calls) {
    if (trans_a)
      pf.reset(a + k0 * lda + i0, kc, mc, lda, calls);
    else
      pf.reset(a + i0 * lda + k0, mc, kc, lda, calls);
  };
  const int64_t row_tiles = (m / kMC) * (kMC / kMR) + (m % kMC + kMR - 1) / kMR;
  Prefetcher next_a, next_b;
  // Operands are read in place where packing would only copy them: op(A) = Aᵀ
  // (each k-row is already a contiguous run of a micro-tile's rows), A unless
  // its rows are a multiple of 2 KiB apart (then a micro-tile's rows would
  // share a few L1 sets), and, for weight gradients (dYᵀ X), op(B) = B in
  // whole panels under the same stride rule. These operands are activations:
  // thousands of k-rows, each element used by only m/MR or n/NR tiles, and
  // packing them cost 5-20% of such products (bench/gemm_bench).
  const bool pack_a_rows = !trans_a && lda % kAliasingStride == 0;
  const bool pack_a_t = trans_a && kPackTransposedA;
  const bool direct_b =
      trans_a && !trans_b && !kPackTransposedA && n % kNR == 0 && ldb % kAliasingStride != 0;
  for (int64_t k0 = 0; k0 < k; k0 += kstep) {
    const int64_t kc = std::min(kstep, k - k0);
    if (!direct_b) pack_b(trans_b, b, ldb, k0, kc, n, packed_b.data());
    // The next k-block's op(B), spread over this whole k-block.
    const int64_t k1 = k0 + kstep, kc1 = std::min(kstep, k - k1);
    if (k1 >= k)
      next_b.reset(nullptr, 0, 0, 0, 0);
    else if (trans_b)
      next_b.reset(b + k1, n, kc1, ldb, panels * row_tiles);
    else
      next_b.reset(b + k1 * ldb, kc1, n, ldb, panels * row_tiles);
    const bool first = k0 == 0;
    Tile t{nullptr,
           ldc,
           pack_a_rows ? kLdp
           : pack_a_t  ? kMR
                       : lda,
           direct_b ? ldb : kNR,
           kNR,
           alpha,
           first ? beta : 1.0f,
           nullptr,
           nullptr,
           ldg,
           nullptr,
           ldr};
    const bool last = k0 + kc >= k;
    for (int64_t i0 = 0; i0 < m; i0 += kMC) {
      const int64_t mc = std::min(kMC, m - i0);
      if (pack_a_rows) pack_a(a, lda, i0, mc, k0, kc, packed_a.data());
      if (pack_a_t) pack_at(a, lda, i0, mc, k0, kc, packed_a.data());
      // The next A block, spread over this block's kernel calls.
      const int64_t calls = panels * ((mc + kMR - 1) / kMR);
      if (i0 + kMC < m)
        a_region(i0 + kMC, std::min(kMC, m - i0 - kMC), k0, kc, next_a, calls);
      else if (k1 < k)
        a_region(0, std::min(kMC, m), k1, kc1, next_a, calls);
      else
        next_a.reset(nullptr, 0, 0, 0, 0);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t j0 = p * kNR;
        t.cols = n - j0;
        t.bias = first && bias ? bias + j0 : nullptr;
        const float* bp = direct_b ? b + k0 * ldb + j0 : packed_b.data() + p * kc * kNR;
        for (int64_t ir = 0; ir < mc; ir += kMR) {
          const int64_t mr = std::min<int64_t>(kMR, mc - ir);
          t.c = c + (i0 + ir) * ldc + j0;
          t.gate = last && gate ? gate + (i0 + ir) * ldg + j0 : nullptr;
          t.res = first && res ? res + (i0 + ir) * ldr + j0 : nullptr;
          next_a.step();
          next_b.step();
          const float* ap = pack_a_rows || pack_a_t ? packed_a.data() + (ir / kMR) * kPanelN
                            : trans_a               ? a + k0 * lda + i0 + ir
                                                    : a + (i0 + ir) * lda + k0;
          table[size_t(mr - 1)](kc, ap, bp, t);
        }
      }
    }
  }
}

}  // namespace bl::detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl::detail {

HWY_EXPORT(HasKernel);
HWY_EXPORT(TileRows);
HWY_EXPORT(PanelCols);
HWY_EXPORT(Gemm);

bool have_gemm_kernel(bool trans_a) {
  return BL_DISPATCH(HasKernel)(trans_a);
}
int64_t gemm_kernel_tile_rows() {
  return BL_DISPATCH(TileRows)();
}
int64_t gemm_kernel_panel_cols() {
  return BL_DISPATCH(PanelCols)();
}

void gemm_kernel(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc, const float* bias, const float* gate, int64_t ldg, const float* res,
                 int64_t ldr) {
  BL_DISPATCH(Gemm)
  (trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, gate, ldg, res, ldr);
}

}  // namespace bl::detail
#endif  // HWY_ONCE
