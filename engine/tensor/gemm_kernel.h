// The engine's own single-thread GEMM (row-major, C = alpha * op(A) * op(B) +
// beta * C), one source compiled for each vector ISA (simd/targets.h) and
// picked at run time. Register tiles of MR rows x two vectors (AVX-512:
// 14 x 32, AVX2: 6 x 16) over 8-tile row blocks; op(A) is read in place
// unless A's rows are a multiple of 2 KiB apart (then copied so they cannot
// alias L1 sets), op(B) is packed into panels of the tile's width (read in
// place for weight gradients, Aᵀ B), k runs in equal blocks of at most 512,
// and the next blocks are prefetched into L2. On the narrow training shapes
// (K and N of 128-1024, M of thousands of tokens) it beats OpenBLAS
// (bench/gemm_bench.cpp). Sums over k run in order, block by block, so a
// result never depends on how callers split C across threads.
#pragma once

#include <cstdint>

namespace bl::detail {

/// True when the ISA the kernels run on now has this kernel for products with
/// op(A) = Aᵀ (trans_a) or A: AVX-512 and NEON for both, AVX2 for A only; the
/// scalar path leaves products to Eigen / the BLAS.
bool have_gemm_kernel(bool trans_a = false);

/// The kernel's tile: rows per micro-tile and columns per panel. Callers that
/// split C across threads cut at multiples of these.
int64_t gemm_kernel_tile_rows();
int64_t gemm_kernel_panel_cols();

/// Rows a multiple of this many floats (2 KiB) apart would put a tile's rows
/// in a few L1 sets, so the kernel copies such operands instead of reading
/// them in place.
constexpr int64_t kAliasingStride = 512;

/// C[m x n] = alpha * op(A) * op(B) + beta * C (+ bias[j] in every row when
/// bias is given, + res[i][j] when a residual (m x n, row stride ldr) is) on
/// the calling thread. With a gate (m x n, row stride ldg; beta must be 0)
/// the result is multiplied by it elementwise in the epilogue:
/// C = (alpha * op(A) * op(B) + bias + res) ∘ gate.
void gemm_kernel(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc, const float* bias = nullptr, const float* gate = nullptr,
                 int64_t ldg = 0, const float* res = nullptr, int64_t ldr = 0);

}  // namespace bl::detail
