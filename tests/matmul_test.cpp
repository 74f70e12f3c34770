#include "ops/matmul.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "gradcheck.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tensor/gemm.h"

namespace bl {
namespace {

TEST(Matmul, LinearMatchesNaive) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{2, 3, 5}, rng);
  auto w = test::make_input("w", Shape{4, 5}, rng);
  auto b = test::make_input("b", Shape{4}, rng);
  Tensor y = linear(x->tensor(), w->tensor(), b->tensor());
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4}));
  for (int r = 0; r < 6; ++r)
    for (int o = 0; o < 4; ++o) {
      double ref = b->data()[o];
      for (int i = 0; i < 5; ++i) ref += double(x->data()[r * 5 + i]) * w->data()[o * 5 + i];
      EXPECT_NEAR(y.data()[r * 4 + o], ref, 1e-5);
    }
  current_graph().clear();
}

TEST(Matmul, LinearGradient) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{3, 4, 6}, rng);
  auto w = test::make_input("w", Shape{5, 6}, rng);
  auto b = test::make_input("b", Shape{5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return linear(x->tensor(), w->tensor(), b->tensor()); },
                               {x.get(), w.get(), b.get()}));
}

TEST(Matmul, BatchedGradient) {
  Rng rng(3);
  auto a = test::make_input("a", Shape{2, 3, 4, 5}, rng);
  auto b = test::make_input("b", Shape{2, 3, 5, 6}, rng);
  EXPECT_TRUE(
      test::grad_check([&] { return matmul(a->tensor(), b->tensor()); }, {a.get(), b.get()}));
  auto bt = test::make_input("bt", Shape{2, 3, 6, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return matmul(a->tensor(), bt->tensor(), true); },
                               {a.get(), bt.get()}));
  auto shared = test::make_input("shared", Shape{5, 6}, rng);
  EXPECT_TRUE(test::grad_check([&] { return matmul(a->tensor(), shared->tensor()); },
                               {a.get(), shared.get()}));
  auto shared_t = test::make_input("shared_t", Shape{6, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return matmul(a->tensor(), shared_t->tensor(), true); },
                               {a.get(), shared_t.get()}));
}

TEST(Matmul, GeluLinearGradient) {
  Rng rng(5);
  auto h = test::make_input("h", Shape{3, 4, 6}, rng);
  auto w = test::make_input("w", Shape{5, 6}, rng);
  auto b = test::make_input("b", Shape{5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return gelu_linear(h->tensor(), w->tensor(), b->tensor()); },
                               {h.get(), w.get(), b.get()}));
}

// gelu_linear against linear(gelu(h)) at training sizes: the own GEMM kernel
// gates dh in its epilogue (one and several k-blocks), h's gradient buffer
// fresh or already holding a gradient, 1 and 2 threads.
TEST(Matmul, GeluLinearMatchesComposedOps) {
  Rng rng(6);
  const int saved = num_threads();
  for (int threads : {1, 2})
    for (int64_t in : {96, 512, 700})  // 512: GELU(h) kept at a padded row stride
      for (bool fresh : {true, false}) {
        set_num_threads(threads);
        auto h = test::make_input("h", Shape{3, 50, in}, rng);
        auto w = test::make_input("w", Shape{40, in}, rng);
        auto b = test::make_input("b", Shape{40}, rng);
        std::vector<float> out[2], dh[2], dw[2], db[2];
        for (int fused = 0; fused < 2; ++fused) {
          Graph& g = current_graph();
          g.clear();
          h->zero_grad();
          w->zero_grad();
          b->zero_grad();
          // hv is an intermediate, so its gradient buffer is created by the
          // product's backward (fresh) unless a later use of it (hv * 0.5),
          // whose backward runs first, created it already.
          Tensor hv = scale(h->tensor(), 1.0f);
          Tensor y = fused ? gelu_linear(hv, w->tensor(), b->tensor())
                           : linear(gelu(hv), w->tensor(), b->tensor());
          Tensor loss = fresh ? sum(y) : add(sum(y), sum(scale(hv, 0.5f)));
          g.backward(loss);
          out[fused].assign(y.data(), y.data() + y.numel());
          dh[fused].assign(h->grad(), h->grad() + h->numel());
          dw[fused].assign(w->grad(), w->grad() + w->numel());
          db[fused].assign(b->grad(), b->grad() + b->numel());
        }
        for (size_t i = 0; i < out[0].size(); ++i) ASSERT_NEAR(out[1][i], out[0][i], 1e-4);
        for (size_t i = 0; i < dh[0].size(); ++i)
          ASSERT_NEAR(dh[1][i], dh[0][i], 1e-4) << "in=" << in << " fresh=" << fresh;
        for (size_t i = 0; i < dw[0].size(); ++i) ASSERT_NEAR(dw[1][i], dw[0][i], 1e-3);
        for (size_t i = 0; i < db[0].size(); ++i) ASSERT_NEAR(db[1][i], db[0][i], 1e-3);
      }
  set_num_threads(saved);
  current_graph().clear();
}

TEST(Matmul, GemmGatedMultipliesTheProductElementwise) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int saved = num_threads();
  for (GemmBackend be : {GemmBackend::automatic, GemmBackend::eigen})
    for (int threads : {1, 2})
      for (int64_t k : {40, 1100})
        for (float beta : {0.0f, 1.0f}) {
          set_gemm_backend(be);
          set_num_threads(threads);
          const int64_t m = 131, n = 70, ldg = n + 3, ldc = n + 5;
          std::vector<float> a(size_t(m * k)), bm(size_t(k * n)), gate(size_t(m * ldg));
          std::vector<float> c(size_t(m * ldc));
          for (float& x : a) x = u(rng);
          for (float& x : bm) x = u(rng);
          for (float& x : gate) x = u(rng);
          for (float& x : c) x = u(rng);
          const std::vector<float> c0 = c;
          gemm_gated(false, false, m, n, k, 0.5f, a.data(), k, bm.data(), n, gate.data(), ldg, beta,
                     c.data(), ldc);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const size_t at = size_t(i * ldc + j);
              if (j >= n) {  // padding untouched
                ASSERT_EQ(c[at], c0[at]);
                continue;
              }
              double ref = 0;
              for (int64_t p = 0; p < k; ++p)
                ref += double(a[size_t(i * k + p)]) * bm[size_t(p * n + j)];
              ref = 0.5 * ref * gate[size_t(i * ldg + j)] + beta * c0[at];
              ASSERT_NEAR(c[at], ref, 1e-4)
                  << "k=" << k << " beta=" << beta << " threads=" << threads;
            }
        }
  set_gemm_backend(GemmBackend::automatic);
  set_num_threads(saved);
}

TEST(Matmul, ShapeErrorsNameTheOp) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{2, 3}, rng);
  auto w = test::make_input("w", Shape{4, 5}, rng);
  try {
    linear(x->tensor(), w->tensor());
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[linear]"), std::string::npos);
  }
}

}  // namespace
}  // namespace bl
