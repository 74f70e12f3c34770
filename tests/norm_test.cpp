#include "ops/norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"

namespace bl {
namespace {

// Naive double reference of both norms and their gradients for output seed dy.
struct NormRef {
  std::vector<double> y, dx, dw, db;
};

NormRef ref_norm(bool rms, const float* x, const float* w, const float* b, const float* dy,
                 int64_t rows, int64_t d, double eps) {
  NormRef r;
  r.y.assign(size_t(rows * d), 0);
  r.dx.assign(size_t(rows * d), 0);
  r.dw.assign(size_t(d), 0);
  r.db.assign(size_t(d), 0);
  for (int64_t i = 0; i < rows; ++i) {
    const float* xr = x + i * d;
    double mean = 0, var = 0;
    if (!rms) {
      for (int64_t j = 0; j < d; ++j) mean += xr[j];
      mean /= double(d);
    }
    for (int64_t j = 0; j < d; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= double(d);
    const double rstd = 1.0 / std::sqrt(var + eps);
    std::vector<double> xhat(static_cast<size_t>(d)), gvec(static_cast<size_t>(d));
    double sg = 0, sgx = 0;
    for (int64_t j = 0; j < d; ++j) {
      xhat[size_t(j)] = (xr[j] - mean) * rstd;
      r.y[size_t(i * d + j)] = xhat[size_t(j)] * (w ? w[j] : 1.0) + (b ? b[j] : 0.0);
      if (!dy) continue;
      const double gj = dy[i * d + j] * (w ? w[j] : 1.0);
      gvec[size_t(j)] = gj;
      sg += gj;
      sgx += gj * xhat[size_t(j)];
      r.dw[size_t(j)] += dy[i * d + j] * xhat[size_t(j)];
      r.db[size_t(j)] += dy[i * d + j];
    }
    if (!dy) continue;
    for (int64_t j = 0; j < d; ++j)
      r.dx[size_t(i * d + j)] = rstd * (gvec[size_t(j)] - (rms ? 0.0 : sg / double(d)) -
                                        xhat[size_t(j)] * sgx / double(d));
  }
  return r;
}

void expect_close(const float* got, const std::vector<double>& want, double tol, const char* what) {
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " element " << i;
}

// Forward and backward (seeded with a random dy) against the reference.
void check_against_ref(bool rms, bool with_w, bool with_b, int64_t rows, int64_t d, float eps) {
  Rng rng(11);
  auto x = test::make_input("x", Shape{rows / 2, 2, d}, rng, 2.0f);
  auto w = test::make_input("w", Shape{d}, rng);
  auto b = test::make_input("b", Shape{d}, rng);
  auto dy = test::make_input("dy", Shape{rows, d}, rng);
  for (int64_t j = 0; j < d; ++j) x->data()[j] += 3.0f;  // a row with a large mean
  x->zero_grad();
  w->zero_grad();
  b->zero_grad();
  Graph& g = current_graph();
  g.clear();
  Tensor wt = with_w ? w->tensor() : Tensor();
  Tensor bt = with_b ? b->tensor() : Tensor();
  Tensor y = rms ? rms_norm(x->tensor(), wt, eps) : layer_norm(x->tensor(), wt, bt, eps);
  ASSERT_EQ(y.shape(), x->shape());
  float* gy = g.grad(y);
  for (int64_t i = 0; i < rows * d; ++i) gy[i] = dy->data()[i];
  g.run_tape();
  NormRef r = ref_norm(rms, x->data(), with_w ? w->data() : nullptr, with_b ? b->data() : nullptr,
                       dy->data(), rows, d, eps);
  expect_close(y.data(), r.y, 1e-5, "y");
  expect_close(x->grad(), r.dx, 1e-4, "dx");
  if (with_w) expect_close(w->grad(), r.dw, 1e-4, "dweight");
  if (with_b) expect_close(b->grad(), r.db, 1e-4, "dbias");
  g.clear();
}

TEST(LayerNorm, MatchesNaive) {
  check_against_ref(false, true, true, 6, 7, 1e-5f);
  check_against_ref(false, false, false, 6, 7, 1e-5f);
  check_against_ref(false, true, false, 4, 5, 1e-5f);
  check_against_ref(false, false, true, 4, 5, 1e-5f);
}

TEST(LayerNorm, ManyRowsReduceWeightGradsAcrossChunks) {
  check_against_ref(false, true, true, 1030, 24, 1e-5f);  // 16 row chunks
  check_against_ref(false, true, true, 300, 9, 1e-5f);
}

TEST(LayerNorm, UsesEps) {
  check_against_ref(false, true, true, 4, 6, 0.5f);
}

TEST(RmsNorm, MatchesNaive) {
  check_against_ref(true, true, false, 6, 7, 1e-6f);
  check_against_ref(true, false, false, 6, 7, 1e-6f);
  check_against_ref(true, true, false, 1030, 24, 1e-6f);
  check_against_ref(true, true, false, 4, 6, 0.5f);
}

TEST(LayerNorm, Gradient) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{2, 3, 6}, rng);
  auto w = test::make_input("w", Shape{6}, rng);
  auto b = test::make_input("b", Shape{6}, rng);
  EXPECT_TRUE(
      test::grad_check([&] { return layer_norm(x->tensor(), w->tensor(), b->tensor(), 1e-5f); },
                       {x.get(), w.get(), b.get()}));
  EXPECT_TRUE(test::grad_check([&] { return layer_norm(x->tensor(), Tensor(), Tensor(), 1e-5f); },
                               {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return layer_norm(x->tensor(), w->tensor(), Tensor(), 0.1f); },
                               {x.get(), w.get()}));
}

TEST(LayerNorm, GradientManyRows) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{200, 5}, rng);
  auto w = test::make_input("w", Shape{5}, rng);
  auto b = test::make_input("b", Shape{5}, rng);
  EXPECT_TRUE(
      test::grad_check([&] { return layer_norm(x->tensor(), w->tensor(), b->tensor(), 1e-5f); },
                       {x.get(), w.get(), b.get()}, {.max_checks_per_input = 24}));
}

TEST(RmsNorm, Gradient) {
  Rng rng(3);
  auto x = test::make_input("x", Shape{3, 4, 6}, rng);
  auto w = test::make_input("w", Shape{6}, rng);
  EXPECT_TRUE(test::grad_check([&] { return rms_norm(x->tensor(), w->tensor(), 1e-6f); },
                               {x.get(), w.get()}));
  EXPECT_TRUE(test::grad_check([&] { return rms_norm(x->tensor(), Tensor(), 1e-6f); }, {x.get()}));
}

TEST(Norm, FrozenInputOnlyWeightGrads) {
  Rng rng(4);
  Parameter x("x", Shape{5, 4}, /*trainable=*/false);
  x.init_normal(rng, 1.0f);
  auto w = test::make_input("w", Shape{4}, rng);
  auto b = test::make_input("b", Shape{4}, rng);
  EXPECT_TRUE(test::grad_check(
      [&] { return layer_norm(x.tensor(), w->tensor(), b->tensor(), 1e-5f); }, {w.get(), b.get()}));
  EXPECT_TRUE(
      test::grad_check([&] { return rms_norm(x.tensor(), w->tensor(), 1e-5f); }, {w.get()}));
}

TEST(Norm, ShapeErrorsNameTheOp) {
  Rng rng(5);
  auto x = test::make_input("x", Shape{2, 3}, rng);
  auto w = test::make_input("w", Shape{4}, rng);
  try {
    layer_norm(x->tensor(), w->tensor(), Tensor(), 1e-5f);
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[layer_norm]"), std::string::npos);
  }
  EXPECT_THROW(rms_norm(x->tensor(), w->tensor(), 1e-5f), std::invalid_argument);
  current_graph().clear();
}

}  // namespace
}  // namespace bl
