#include "tensor/gemm.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tensor/gemm_kernel.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
using MatRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const MatRM, 0, Eigen::OuterStride<>>;
using MMap = Eigen::Map<MatRM, 0, Eigen::OuterStride<>>;

template <class A, class B>
void assign(MMap& c, float alpha, float beta, const A& a, const B& b) {
  if (beta == 0.0f) {
    if (alpha == 1.0f)
      c.noalias() = a * b;
    else
      c.noalias() = alpha * (a * b);
  } else {
    if (alpha == 1.0f)
      c.noalias() += a * b;
    else
      c.noalias() += alpha * (a * b);
  }
}
// The engine's own kernel where it wins: an ISA it has a kernel for (simd/isa.h),
// and enough rows to amortise packing op(B) (a decode step's one-row product stays with Eigen's
// GEMV). BLOCKLAB_GEMM=eigen (or set_gemm_backend) selects Eigen everywhere.
std::atomic<GemmBackend> g_backend{[] {
  const char* e = std::getenv("BLOCKLAB_GEMM");
  return e && std::strcmp(e, "eigen") == 0 ? GemmBackend::eigen : GemmBackend::automatic;
}()};

bool use_own_kernel(bool trans_a, int64_t m, int64_t n, int64_t k) {
  return g_backend.load(std::memory_order_relaxed) == GemmBackend::automatic && m >= 32 &&
         n >= 16 && k >= 16 && detail::have_gemm_kernel(trans_a);
}

// Splits C across the engine's threads (rows, or 32-column panels when C is
// short and wide); each part sums over k exactly as the whole would.
void own_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
              const float* bias = nullptr, const float* gate = nullptr, int64_t ldg = 0,
              const float* res = nullptr, int64_t ldr = 0) {
  const int nt = omp_in_parallel() || double(m) * n * k < 1 << 21 ? 1 : omp_get_max_threads();
  if (nt <= 1) {
    detail::gemm_kernel(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, gate, ldg, res,
                        ldr);
    return;
  }
  const bool by_rows = m >= 64 * nt || m >= n;
  const int64_t unit = by_rows ? detail::gemm_kernel_tile_rows() : detail::gemm_kernel_panel_cols();
  const int64_t total = by_rows ? m : n;
  const int64_t part = ((total + nt - 1) / nt + unit - 1) / unit * unit;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int t = 0; t < nt; ++t) {
    const int64_t p0 = t * part, p1 = std::min(total, p0 + part);
    if (p0 >= p1) continue;
    if (by_rows)
      detail::gemm_kernel(ta, tb, p1 - p0, n, k, alpha, ta ? a + p0 : a + p0 * lda, lda, b, ldb,
                          beta, c + p0 * ldc, ldc, bias, gate ? gate + p0 * ldg : nullptr, ldg,
                          res ? res + p0 * ldr : nullptr, ldr);
    else
      detail::gemm_kernel(ta, tb, m, p1 - p0, k, alpha, a, lda, tb ? b + p0 * ldb : b + p0, ldb,
                          beta, c + p0, ldc, bias ? bias + p0 : nullptr, gate ? gate + p0 : nullptr,
                          ldg, res ? res + p0 : nullptr, ldr);
  }
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  MMap cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (beta == 0.0f) cm.setZero();
    return;
  }
  if (use_own_kernel(trans_a, m, n, k)) {
    own_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  CMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  CMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b)
    assign(cm, alpha, beta, am, bm);
  else if (!trans_a && trans_b)
    assign(cm, alpha, beta, am, bm.transpose());
  else if (trans_a && !trans_b)
    assign(cm, alpha, beta, am.transpose(), bm);
  else
    assign(cm, alpha, beta, am.transpose(), bm.transpose());
}

void gemm_gated(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, const float* gate,
                int64_t ldg, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (beta == 0.0f && k > 0 && use_own_kernel(trans_a, m, n, k)) {
    own_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, 0.0f, c, ldc, nullptr, gate, ldg);
    return;
  }
  // Elsewhere: the product into C (beta 0) or into scratch (beta 1), then the
  // gate in a second pass. The scratch grows once and is reused.
  thread_local std::vector<float> scratch;
  float* p = c;
  int64_t ldp = ldc;
  if (beta != 0.0f) {
    if (scratch.size() < size_t(m * n)) scratch.resize(size_t(m * n));
    p = scratch.data();
    ldp = n;
  }
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, 0.0f, p, ldp);
  parallel_for(
      m,
      [&](int64_t i) {
        const float* g = gate + i * ldg;
        const float* pr = p + i * ldp;
        float* cr = c + i * ldc;
        if (beta != 0.0f)
          for (int64_t j = 0; j < n; ++j) cr[j] += pr[j] * g[j];
        else
          for (int64_t j = 0; j < n; ++j) cr[j] = pr[j] * g[j];
      },
      64);
}

void linear_gemm(int64_t m, int64_t n, int64_t k, const float* x, const float* w, const float* bias,
                 float* y, const float* residual, int64_t ldx) {
  if (ldx <= 0) ldx = k;
  if (k > 0 && use_own_kernel(false, m, n, k)) {
    own_gemm(false, true, m, n, k, 1.0f, x, ldx, w, k, 0.0f, y, n, bias, nullptr, 0, residual, n);
    return;
  }
  if (bias || residual)  // y = bias + residual, then the product added to it
    parallel_for(
        m,
        [&](int64_t r) {
          float* yr = y + r * n;
          for (int64_t j = 0; j < n; ++j)
            yr[j] = (bias ? bias[j] : 0.0f) + (residual ? residual[r * n + j] : 0.0f);
        },
        256);
  gemm(false, true, m, n, k, 1.0f, x, ldx, w, k, bias || residual ? 1.0f : 0.0f, y, n);
}

int64_t gemm_row_stride(int64_t cols) {
  return cols % detail::kAliasingStride == 0 ? cols + 16 : cols;
}

void set_gemm_backend(GemmBackend b) {
  g_backend.store(b);
}
GemmBackend gemm_backend() {
  return g_backend.load();
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  Eigen::setNbThreads(n);
}

int num_threads() {
  return omp_get_max_threads();
}

}  // namespace bl
