#include "ops/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"

namespace bl {
namespace {

// Naive double reference: mean over non-ignored rows of logsumexp - logit[t].
double ref_loss(const float* x, const std::vector<int32_t>& t, int64_t v) {
  double sum = 0;
  int64_t count = 0;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] < 0) continue;
    double mx = -1e300, s = 0;
    for (int64_t j = 0; j < v; ++j) mx = std::max(mx, double(x[int64_t(r) * v + j]));
    for (int64_t j = 0; j < v; ++j) s += std::exp(double(x[int64_t(r) * v + j]) - mx);
    sum += mx + std::log(s) - x[int64_t(r) * v + t[r]];
    ++count;
  }
  return count ? sum / double(count) : 0.0;
}

std::vector<int32_t> random_targets(Rng& rng, int64_t n, int64_t v, bool with_ignored) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& id : t) id = int32_t(rng.below(uint64_t(v)));
  if (with_ignored)
    for (size_t i = 0; i < t.size(); i += 3) t[i] = -100;
  return t;
}

TEST(CrossEntropy, MatchesNaive) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{2, 5, 11}, rng, 2.0f);
  auto t = random_targets(rng, 10, 11, true);
  Tensor loss = cross_entropy(x->tensor(), Tokens{t.data(), Shape{2, 5}});
  ASSERT_EQ(loss.shape(), (Shape{1}));
  EXPECT_NEAR(loss.item(), ref_loss(x->data(), t, 11), 1e-5);
  current_graph().clear();
}

TEST(CrossEntropy, ManyRowsMatchNaive) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{4096, 65}, rng, 3.0f);
  auto t = random_targets(rng, 4096, 65, true);
  Tensor loss = cross_entropy(x->tensor(), Tokens{t.data(), Shape{4096}});
  EXPECT_NEAR(loss.item(), ref_loss(x->data(), t, 65), 1e-5 * ref_loss(x->data(), t, 65));
  current_graph().clear();
}

TEST(CrossEntropy, UniformLogitsGiveLogV) {
  Parameter x("x", Shape{3, 65});
  std::vector<int32_t> t = {0, 64, 17};
  Tensor loss = cross_entropy(x.tensor(), Tokens{t.data(), Shape{3}});
  EXPECT_NEAR(loss.item(), std::log(65.0), 1e-6);
  current_graph().clear();
}

TEST(CrossEntropy, Gradient) {
  Rng rng(3);
  auto x = test::make_input("x", Shape{3, 4, 7}, rng);
  auto t = random_targets(rng, 12, 7, true);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return cross_entropy(x->tensor(), Tokens{t.data(), Shape{3, 4}});
      },
      {x.get()}));
}

TEST(CrossEntropy, GradientIsSoftmaxMinusOneHotOverCount) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{300, 9}, rng);
  auto t = random_targets(rng, 300, 9, true);
  x->zero_grad();
  Graph& g = current_graph();
  g.clear();
  Tensor loss = cross_entropy(x->tensor(), Tokens{t.data(), Shape{300}});
  g.backward(loss, 2.0f);
  int64_t count = 0;
  for (int32_t id : t) count += id >= 0;
  for (int64_t r = 0; r < 300; ++r) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < 9; ++j) mx = std::max(mx, double(x->data()[r * 9 + j]));
    for (int j = 0; j < 9; ++j) s += std::exp(double(x->data()[r * 9 + j]) - mx);
    for (int j = 0; j < 9; ++j) {
      double want = 0;
      if (t[size_t(r)] >= 0)
        want = 2.0 * (std::exp(double(x->data()[r * 9 + j]) - mx) / s - (j == t[size_t(r)])) /
               double(count);
      ASSERT_NEAR(x->grad()[r * 9 + j], want, 1e-6) << "row " << r << " col " << j;
    }
  }
  g.clear();
}

TEST(CrossEntropy, AllIgnoredGivesZero) {
  Rng rng(5);
  auto x = test::make_input("x", Shape{4, 5}, rng);
  std::vector<int32_t> t(4, -1);
  x->zero_grad();
  Graph& g = current_graph();
  g.clear();
  Tensor loss = cross_entropy(x->tensor(), Tokens{t.data(), Shape{4}});
  EXPECT_EQ(loss.item(), 0.0f);
  g.backward(loss);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(x->grad()[i], 0.0f);
  g.clear();
}

TEST(CrossEntropy, TargetOutOfRangeNamesIt) {
  Rng rng(6);
  auto x = test::make_input("x", Shape{2, 65}, rng);
  std::vector<int32_t> t = {3, 70};
  try {
    cross_entropy(x->tensor(), Tokens{t.data(), Shape{2}});
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[cross_entropy]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("70"), std::string::npos) << msg;
    EXPECT_NE(msg.find("65"), std::string::npos) << msg;
  }
  std::vector<int32_t> short_t = {1};
  EXPECT_THROW(cross_entropy(x->tensor(), Tokens{short_t.data(), Shape{1}}), std::invalid_argument);
  current_graph().clear();
}

}  // namespace
}  // namespace bl
