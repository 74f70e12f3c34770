#include "tensor/gemm.h"

#include <omp.h>

#include <Eigen/Core>

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
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  MMap cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (beta == 0.0f) cm.setZero();
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

void set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  Eigen::setNbThreads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace bl
