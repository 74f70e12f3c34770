#include "ops/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"

namespace bl {
namespace {

// Naive reference, HF Llama rotate_half convention, in double.
std::vector<double> ref_rope(const float* x, int64_t batch, int64_t t_len, int64_t heads,
                             int64_t hd, double theta, int64_t off, int64_t rot) {
  std::vector<double> y(static_cast<size_t>(batch * t_len * heads * hd));
  const int64_t half = rot / 2;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < t_len; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base = ((b * t_len + t) * heads + h) * hd;
        for (int64_t i = 0; i < hd; ++i) {
          double out = x[base + i];
          if (i < rot) {
            const int64_t fi = i % half;
            const double ang = double(off + t) * std::pow(theta, -2.0 * double(fi) / double(rot));
            // rotate_half(x) = cat(-x2, x1)
            const double rh = i < half ? -double(x[base + i + half]) : double(x[base + i - half]);
            out = x[base + i] * std::cos(ang) + rh * std::sin(ang);
          }
          y[size_t(base + i)] = out;
        }
      }
  return y;
}

void check(int64_t batch, int64_t t_len, int64_t heads, int64_t hd, float theta, int64_t off,
           int64_t rot) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{batch, t_len, heads * hd}, rng);
  Tensor y = rope(x->tensor(), heads, theta, off, rot);
  ASSERT_EQ(y.shape(), x->shape());
  auto want = ref_rope(x->data(), batch, t_len, heads, hd, theta, off, rot == 0 ? hd : rot);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(y.data()[i], want[i], 2e-5) << i;
  current_graph().clear();
}

TEST(Rope, MatchesNaive) {
  check(2, 5, 3, 8, 10000.f, 0, 0);
  check(2, 5, 3, 8, 10000.f, 7, 0);     // decoding offset
  check(1, 4, 2, 10, 500000.f, 3, 4);   // partial rotation; dims 4.. pass through
  check(3, 130, 2, 32, 10000.f, 0, 0);  // enough rows for the parallel path
}

TEST(Rope, PositionZeroIsIdentityAndNormIsPreserved) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{1, 3, 16}, rng);
  Tensor y = rope(x->tensor(), 2, 10000.f);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(y.data()[i], x->data()[i]);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < 2; ++h) {
      double nx = 0, ny = 0;
      for (int i = 0; i < 8; ++i) {
        nx += std::pow(x->data()[t * 16 + h * 8 + i], 2);
        ny += std::pow(y.data()[t * 16 + h * 8 + i], 2);
      }
      EXPECT_NEAR(nx, ny, 1e-4);
    }
  current_graph().clear();
}

TEST(Rope, DotProductDependsOnlyOnRelativePosition) {
  // <rope(q, m), rope(k, n)> = f(q, k, m - n): the property attention relies on.
  Rng rng(3);
  auto q = test::make_input("q", Shape{1, 1, 8}, rng);
  auto k = test::make_input("k", Shape{1, 1, 8}, rng);
  auto dot_at = [&](int64_t m, int64_t n) {
    Tensor a = rope(q->tensor(), 1, 100.f, m);
    Tensor b = rope(k->tensor(), 1, 100.f, n);
    double s = 0;
    for (int i = 0; i < 8; ++i) s += double(a.data()[i]) * b.data()[i];
    return s;
  };
  EXPECT_NEAR(dot_at(5, 2), dot_at(13, 10), 1e-4);
  EXPECT_NEAR(dot_at(0, 7), dot_at(20, 27), 1e-4);
  current_graph().clear();
}

TEST(Rope, Gradient) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{2, 4, 12}, rng);
  EXPECT_TRUE(test::grad_check([&] { return rope(x->tensor(), 2, 10000.f, 3); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return rope(x->tensor(), 2, 100.f, 0, 4); }, {x.get()}));
}

TEST(Rope, BadArgumentsNameTheOp) {
  Rng rng(5);
  auto x = test::make_input("x", Shape{1, 2, 12}, rng);
  try {
    rope(x->tensor(), 5, 10000.f);
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[rope]"), std::string::npos);
  }
  EXPECT_THROW(rope(x->tensor(), 2, 10000.f, 0, 3), std::invalid_argument);  // odd rot_dim
  EXPECT_THROW(rope(x->tensor(), 2, 10000.f, 0, 8), std::invalid_argument);  // > head_dim
  current_graph().clear();
}

}  // namespace
}  // namespace bl
