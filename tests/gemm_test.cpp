// bl::gemm against a double-precision reference, on both backends: the
// engine's own kernel for the ISA under test (edges of its tiles, k split into
// blocks, padded leading dimensions, alpha/beta, split across threads) and
// Eigen; and the own kernel called directly.
#include "tensor/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tensor/gemm_kernel.h"

namespace {

struct Case {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  bool padded = true;  // leading dimensions padded; false: exactly the row widths
};

// Fills C first: NaN when beta is 0 (it must not be read), values otherwise.
// direct: the current ISA's own kernel on one thread, even where bl::gemm
// would route the product elsewhere (scalar; Aᵀ B on AVX2).
double max_rel_error(const Case& c, int threads, bool direct = false) {
  std::mt19937 rng(uint32_t(c.m * 131 + c.n * 17 + c.k));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t pa = c.padded ? 3 : 0, pb = c.padded ? 5 : 0, pc = c.padded ? 7 : 0;
  const int64_t lda = (c.ta ? c.m : c.k) + pa, ldb = (c.tb ? c.k : c.n) + pb, ldc = c.n + pc;
  std::vector<float> a(size_t((c.ta ? c.k : c.m) * lda)), b(size_t((c.tb ? c.n : c.k) * ldb));
  std::vector<float> cm(size_t(c.m * ldc));
  for (float& x : a) x = u(rng);
  for (float& x : b) x = u(rng);
  for (float& x : cm) x = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : u(rng);
  const std::vector<float> c0 = cm;
  bl::set_num_threads(threads);
  if (direct)
    bl::detail::gemm_kernel(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a.data(), lda, b.data(), ldb,
                            c.beta, cm.data(), ldc);
  else
    bl::gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a.data(), lda, b.data(), ldb, c.beta, cm.data(),
             ldc);
  double worst = 0;
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double ref = 0, mag = 0;
      for (int64_t p = 0; p < c.k; ++p) {
        const double x = c.ta ? a[size_t(p * lda + i)] : a[size_t(i * lda + p)];
        const double y = c.tb ? b[size_t(j * ldb + p)] : b[size_t(p * ldb + j)];
        ref += x * y;
        mag += std::abs(x * y);
      }
      ref *= c.alpha;
      if (c.beta != 0.0f) ref += double(c.beta) * c0[size_t(i * ldc + j)];
      const double got = cm[size_t(i * ldc + j)];
      if (!std::isfinite(got)) return std::numeric_limits<double>::infinity();
      worst = std::max(worst, std::abs(got - ref) / (std::abs(c.alpha) * mag + 1.0));
    }
  // Padding between rows of C stays untouched.
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = c.n; j < ldc; ++j)
      if (!(std::isnan(c0[size_t(i * ldc + j)]) && std::isnan(cm[size_t(i * ldc + j)])) &&
          c0[size_t(i * ldc + j)] != cm[size_t(i * ldc + j)])
        return std::numeric_limits<double>::infinity();
  return worst;
}

class GemmBackends : public ::testing::TestWithParam<bl::GemmBackend> {
 protected:
  void SetUp() override { bl::set_gemm_backend(GetParam()); }
  void TearDown() override {
    bl::set_gemm_backend(bl::GemmBackend::automatic);
    bl::set_num_threads(1);
  }
};

// m: below/at/above the tile's rows (14 AVX-512, 6 AVX2) and its 8-tile
// block; n: partial panels; k: one block, and 1100 = three k-blocks.
const std::vector<Case> kCases = {
    {false, false, 37, 45, 29, 1.0f, 0.0f},
    {false, true, 113, 33, 130, 1.0f, 1.0f},
    {true, false, 29, 65, 1100, 1.0f, 1.0f},
    {true, true, 50, 17, 64, 0.5f, 0.0f},
    {false, true, 256, 384, 128, -2.0f, 1.0f},
    {false, false, 100, 96, 600, 1.0f, 0.0f},
    {true, false, 128, 128, 4096, 1.0f, 1.0f},
    {false, true, 4, 70, 40, 1.0f, 0.0f},
    {false, false, 45, 3, 200, 1.0f, 1.0f},
    // Unpadded power-of-two strides: the own kernel packs A (rows 2 KiB
    // apart) or op(B) of a weight-gradient product instead of reading them
    // in place; the other strides above take the in-place paths.
    {false, true, 60, 40, 512, 1.0f, 0.0f, false},
    {false, false, 100, 96, 1024, 1.0f, 1.0f, false},
    {true, false, 40, 512, 600, 1.0f, 1.0f, false},
    {true, false, 70, 64, 300, 1.0f, 0.0f, false},
};

TEST_P(GemmBackends, MatchesDoubleReferenceOnEveryForm) {
  for (int threads : {1, 2})
    for (const Case& c : kCases) {
      const double err = max_rel_error(c, threads);
      // float accumulation over k terms: relative error grows like k * eps.
      EXPECT_LT(err, 4e-7 * std::sqrt(double(c.k)) + 1e-6)
          << "ta=" << c.ta << " tb=" << c.tb << " m=" << c.m << " n=" << c.n << " k=" << c.k
          << " threads=" << threads;
    }
}

// The ISA's own kernel on every form, also those bl::gemm leaves to the BLAS
// on this ISA (AVX2 packs Aᵀ; the scalar target's 4 x 2 tiles).
TEST(GemmKernel, DirectMatchesDoubleReferenceOnEveryForm) {
  for (const Case& c : kCases) {
    const double err = max_rel_error(c, 1, true);
    EXPECT_LT(err, 4e-7 * std::sqrt(double(c.k)) + 1e-6)
        << "ta=" << c.ta << " tb=" << c.tb << " m=" << c.m << " n=" << c.n << " k=" << c.k;
  }
}

TEST_P(GemmBackends, ZeroInnerDimensionScalesC) {
  std::vector<float> c(6, 2.0f);
  bl::gemm(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.0f, c.data(), 3);
  for (float x : c) EXPECT_EQ(x, 0.0f);
}

// With and without a bias and a residual; k = 600 runs in two k-blocks (the
// residual goes into the first only), n = 70 ends in a partial panel, and 2
// threads split the rows (m = 131) or the panels (m = 5 stays on Eigen's side).
TEST_P(GemmBackends, LinearGemmAddsTheBiasAndResidualToEveryRow) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int threads : {1, 2})
    for (int64_t m : {5, 131})
      for (int64_t n : {17, 70}) {
        const int64_t k = 600;
        std::vector<float> x(size_t(m * k)), w(size_t(n * k)), y(size_t(m * n));
        std::vector<float> bias(static_cast<size_t>(n)), res(size_t(m * n));
        for (float& v : x) v = u(rng);
        for (float& v : w) v = u(rng);
        for (float& v : bias) v = u(rng);
        for (float& v : res) v = 4.0f * u(rng);
        bl::set_num_threads(threads);
        for (bool with_bias : {true, false})
          for (bool with_res : {false, true}) {
            bl::linear_gemm(m, n, k, x.data(), w.data(), with_bias ? bias.data() : nullptr,
                            y.data(), with_res ? res.data() : nullptr);
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                double ref =
                    (with_bias ? bias[size_t(j)] : 0.0) + (with_res ? res[size_t(i * n + j)] : 0.0);
                for (int64_t p = 0; p < k; ++p)
                  ref += double(x[size_t(i * k + p)]) * w[size_t(j * k + p)];
                ASSERT_NEAR(y[size_t(i * n + j)], ref, 2e-5)
                    << "m=" << m << " n=" << n << " bias=" << with_bias << " res=" << with_res
                    << " threads=" << threads;
              }
          }
      }
}

INSTANTIATE_TEST_SUITE_P(Gemm, GemmBackends,
                         ::testing::Values(bl::GemmBackend::automatic, bl::GemmBackend::eigen),
                         [](const auto& info) {
                           return info.param == bl::GemmBackend::automatic ? "Automatic" : "Eigen";
                         });

// Threads split C by rows or panels; every element sums over k in the same
// order, so the result is bitwise the same at any thread count.
TEST(Gemm, ThreadCountDoesNotChangeBits) {
  if (!bl::detail::have_gemm_kernel()) GTEST_SKIP() << "the scalar path has no own GEMM kernel";
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t m = 300, n = 200, k = 700;
  std::vector<float> a(size_t(m * k)), b(size_t(k * n)), c1(size_t(m * n)), c2(size_t(m * n));
  for (float& x : a) x = u(rng);
  for (float& x : b) x = u(rng);
  bl::set_num_threads(1);
  bl::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c1.data(), n);
  bl::set_num_threads(2);
  bl::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c2.data(), n);
  bl::set_num_threads(1);
  EXPECT_EQ(c1, c2);
}

}  // namespace
