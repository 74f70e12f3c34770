// The one GEMM entry point of the engine (row-major): the own kernel
// (gemm_kernel.h, per vector ISA) where it applies, Eigen otherwise.
// C = alpha * op(A) * op(B) + beta * C with beta in {0, 1}.
#pragma once

#include <cstdint>

namespace bl {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

/// C = (alpha * op(A) * op(B)) ∘ gate, or C += that when beta = 1: a product
/// that feeds an elementwise gate (an activation's derivative, in backward),
/// applied in the GEMM's epilogue rather than in a second pass over C.
/// gate is m x n with row stride ldg.
void gemm_gated(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, const float* gate,
                int64_t ldg, float beta, float* c, int64_t ldc);

/// y[m x n] = x[m x k] · wᵀ + bias + residual (w is n x k, y and residual
/// contiguous, x rows at stride ldx, default k; bias (n) and residual (m x n)
/// may be null): a Linear layer's forward, with the bias and a residual
/// stream's add in the GEMM's epilogue.
/// A row stride (>= cols floats) at which the engine's GEMM reads a matrix in
/// place: cols, or cols padded by 64 bytes when that would alias L1 sets.
int64_t gemm_row_stride(int64_t cols);

void linear_gemm(int64_t m, int64_t n, int64_t k, const float* x, const float* w, const float* bias,
                 float* y, const float* residual = nullptr, int64_t ldx = 0);

/// automatic: the engine's own kernel where the ISA and shape allow,
/// else Eigen (over OpenBLAS when linked). eigen: Eigen everywhere (A/B runs).
enum class GemmBackend { automatic, eigen };
void set_gemm_backend(GemmBackend b);
GemmBackend gemm_backend();

/// Threads used by GEMM and by the engine's parallel loops.
void set_num_threads(int n);
int num_threads();

}  // namespace bl
