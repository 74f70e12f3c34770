#include "ops/softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"

namespace bl {
namespace {

TEST(Softmax, MatchesNaive) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{2, 3, 7}, rng, 3.0f);
  Tensor y = softmax(x->tensor());
  ASSERT_EQ(y.shape(), x->shape());
  for (int r = 0; r < 6; ++r) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < 7; ++j) mx = std::max(mx, double(x->data()[r * 7 + j]));
    for (int j = 0; j < 7; ++j) s += std::exp(double(x->data()[r * 7 + j]) - mx);
    for (int j = 0; j < 7; ++j)
      EXPECT_NEAR(y.data()[r * 7 + j], std::exp(double(x->data()[r * 7 + j]) - mx) / s, 1e-6);
  }
  current_graph().clear();
}

TEST(Softmax, StableForHugeLogits) {
  Rng rng(2);
  Parameter x("x", Shape{2, 4});
  const float vals[8] = {1000.f, 1001.f, 999.f, -1000.f, -5000.f, -5000.f, -5000.f, -5001.f};
  for (int i = 0; i < 8; ++i) x.data()[i] = vals[i];
  Tensor y = softmax(x.tensor());
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(std::isfinite(y.data()[i]));
  EXPECT_NEAR(y.data()[1], 1.0 / (1.0 + std::exp(-1.0) + std::exp(-2.0)), 1e-6);
  EXPECT_NEAR(y.data()[4], 1.0 / (3.0 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(y.data()[3], 0.0f);
  current_graph().clear();
}

TEST(Softmax, Gradient) {
  Rng rng(3);
  auto x = test::make_input("x", Shape{3, 4, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return softmax(x->tensor()); }, {x.get()}));
}

TEST(Softmax, GradientManyRowsWideRows) {
  // Enough rows to run the parallel path; wide rows exercise vectorised exp.
  Rng rng(4);
  auto x = test::make_input("x", Shape{300, 33}, rng);
  EXPECT_TRUE(test::grad_check([&] { return softmax(x->tensor()); }, {x.get()}));
}

}  // namespace
}  // namespace bl
