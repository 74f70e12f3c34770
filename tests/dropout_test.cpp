// Inverted dropout.
#include "ops/dropout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "gradcheck.h"

namespace bl {
namespace {

TEST(Dropout, IdentityWhenNotTrainingOrPZero) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{4, 5}, rng);
  Graph& g = current_graph();
  g.clear();
  const auto state = rng.state();
  Tensor t = x->tensor();
  EXPECT_EQ(dropout(t, 0.5f, false, rng).impl(), t.impl());
  EXPECT_EQ(dropout(t, 0.0f, true, rng).impl(), t.impl());
  EXPECT_EQ(rng.state(), state);  // no random numbers consumed
  EXPECT_EQ(g.tape_size(), 0u);
}

TEST(Dropout, InvalidPThrows) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{3}, rng);
  for (float p : {1.0f, -0.1f, 1.5f}) {
    try {
      dropout(x->tensor(), p, true, rng);
      FAIL() << "expected throw for p = " << p;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("[dropout]"), std::string::npos) << e.what();
    }
  }
  current_graph().clear();
}

TEST(Dropout, DropsAboutPAndScalesSurvivors) {
  Rng init(3);
  auto x = test::make_input("x", Shape{200, 1000}, init);
  for (int64_t i = 0; i < x->numel(); ++i) x->data()[i] += x->data()[i] >= 0 ? 0.1f : -0.1f;
  for (float p : {0.1f, 0.5f, 0.9f}) {
    Rng rng(11);
    Tensor y = dropout(x->tensor(), p, true, rng);
    ASSERT_EQ(y.shape(), x->shape());
    int64_t zeros = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      if (y.data()[i] == 0.0f) {
        ++zeros;
      } else {
        ASSERT_FLOAT_EQ(y.data()[i], x->data()[i] / (1.0f - p)) << i;
      }
    }
    // 2e5 Bernoulli draws: the standard deviation of the rate is <= 0.0012.
    EXPECT_NEAR(double(zeros) / double(y.numel()), p, 0.01) << "p = " << p;
    current_graph().clear();
  }
}

TEST(Dropout, SameSeedSameMask) {
  Rng init(4);
  auto x = test::make_input("x", Shape{50, 40}, init);
  Rng r1(9), r2(9);
  Tensor a = dropout(x->tensor(), 0.3f, true, r1);
  Tensor b = dropout(x->tensor(), 0.3f, true, r2);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data()[i], b.data()[i]);
  // The stream advanced: a second call draws a different mask.
  Tensor c = dropout(x->tensor(), 0.3f, true, r1);
  int64_t differ = 0;
  for (int64_t i = 0; i < a.numel(); ++i) differ += a.data()[i] != c.data()[i];
  EXPECT_GT(differ, 0);
  current_graph().clear();
}

TEST(Dropout, BackwardUsesTheForwardMask) {
  Graph& g = current_graph();
  g.clear();
  Rng init(5);
  auto x = test::make_input("x", Shape{128, 300}, init);
  for (int64_t i = 0; i < x->numel(); ++i) x->data()[i] += x->data()[i] >= 0 ? 0.1f : -0.1f;
  Rng rng(6);
  const float p = 0.25f;
  Tensor y = dropout(x->tensor(), p, true, rng);
  float* gy = g.grad(y);
  for (int64_t i = 0; i < y.numel(); ++i) gy[i] = float(init.normal());
  x->zero_grad();
  g.run_tape();
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float expect = y.data()[i] == 0.0f ? 0.0f : gy[i] / (1.0f - p);
    ASSERT_FLOAT_EQ(x->grad()[i], expect) << i;
  }
  g.clear();
}

TEST(Dropout, Gradient) {
  Rng init(7);
  auto x = test::make_input("x", Shape{6, 7}, init);
  // A fresh generator with a fixed seed per call keeps the mask fixed across
  // the finite-difference evaluations.
  EXPECT_TRUE(test::grad_check(
      [&] {
        Rng rng(8);
        return dropout(x->tensor(), 0.4f, true, rng);
      },
      {x.get()}));
}

TEST(Dropout, NoGradInputRecordsNothing) {
  Graph& g = current_graph();
  g.clear();
  Rng init(9);
  auto x = test::make_input("x", Shape{10}, init);
  NoGradGuard ng;
  Tensor y = dropout(x->tensor(), 0.5f, true, init);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(g.tape_size(), 0u);
  g.clear();
}

}  // namespace
}  // namespace bl
