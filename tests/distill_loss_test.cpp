#include "ops/distill_loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gradcheck.h"
#include "ops/cross_entropy.h"

namespace bl {
namespace {

std::vector<int32_t> random_targets(Rng& rng, int64_t n, int64_t v, bool with_ignored) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& id : t) id = int32_t(rng.below(uint64_t(v)));
  if (with_ignored)
    for (size_t i = 1; i < t.size(); i += 4) t[i] = -100;
  return t;
}

// Double reference: log-softmax of x / T of one row.
std::vector<double> log_softmax(const float* x, int64_t v, double T) {
  double m = -1e300, s = 0;
  for (int64_t j = 0; j < v; ++j) m = std::max(m, double(x[j]) / T);
  for (int64_t j = 0; j < v; ++j) s += std::exp(double(x[j]) / T - m);
  std::vector<double> out(static_cast<size_t>(v));
  for (int64_t j = 0; j < v; ++j) out[size_t(j)] = double(x[j]) / T - m - std::log(s);
  return out;
}

// Mean over counted rows of alpha * CE + (1 - alpha) * T^2 * KL, in double;
// grad (if given) gets the formula of the brief.
double ref_loss(const float* s, const float* t, const std::vector<int32_t>& tg, int64_t v, double T,
                double alpha, std::vector<double>* grad = nullptr) {
  int64_t n = 0;
  for (int32_t id : tg) n += id >= 0;
  if (grad) grad->assign(tg.size() * size_t(v), 0.0);
  double total = 0;
  for (size_t r = 0; r < tg.size(); ++r) {
    if (tg[r] < 0) continue;
    const float* sr = s + int64_t(r) * v;
    const float* trow = t + int64_t(r) * v;
    const auto ls1 = log_softmax(sr, v, 1.0), lsT = log_softmax(sr, v, T),
               ltT = log_softmax(trow, v, T);
    double kl = 0;
    for (int64_t j = 0; j < v; ++j)
      kl += std::exp(ltT[size_t(j)]) * (ltT[size_t(j)] - lsT[size_t(j)]);
    total += alpha * -ls1[size_t(tg[r])] + (1 - alpha) * T * T * kl;
    if (grad)
      for (int64_t j = 0; j < v; ++j)
        (*grad)[r * size_t(v) + size_t(j)] =
            (alpha * (std::exp(ls1[size_t(j)]) - (j == tg[r] ? 1.0 : 0.0)) +
             (1 - alpha) * T * (std::exp(lsT[size_t(j)]) - std::exp(ltT[size_t(j)]))) /
            double(n);
  }
  return n ? total / double(n) : 0.0;
}

TEST(DistillLoss, MatchesDoubleReference) {
  Rng rng(1);
  auto s = test::make_input("s", Shape{3, 5, 13}, rng, 2.0f);
  auto t = test::make_input("t", Shape{3, 5, 13}, rng, 2.0f);
  auto tg = random_targets(rng, 15, 13, true);
  for (float T : {0.5f, 1.0f, 2.0f, 5.0f})
    for (float a : {0.0f, 0.25f, 0.5f, 1.0f}) {
      DistillParts parts;
      Tensor l =
          distill_loss(s->tensor(), t->tensor(), Tokens{tg.data(), Shape{3, 5}}, T, a, &parts);
      const double want = ref_loss(s->data(), t->data(), tg, 13, T, a);
      EXPECT_NEAR(l.item(), want, 1e-5 * std::max(1.0, std::abs(want))) << "T " << T << " a " << a;
      EXPECT_NEAR(parts.ce, ref_loss(s->data(), t->data(), tg, 13, T, 1.0), 1e-5);
      EXPECT_NEAR(parts.kl * T * T, ref_loss(s->data(), t->data(), tg, 13, T, 0.0), 1e-5);
      current_graph().clear();
    }
}

TEST(DistillLoss, KlIsZeroForTheTeacherItselfAndPositiveOtherwise) {
  Rng rng(2);
  auto s = test::make_input("s", Shape{8, 21}, rng, 3.0f);
  auto t = test::make_input("t", Shape{8, 21}, rng, 3.0f);
  auto tg = random_targets(rng, 8, 21, false);
  const Tokens tok{tg.data(), Shape{8}};
  EXPECT_NEAR(distill_kl(s->tensor(), s->tensor(), tok, 2.0f).item(), 0.0, 1e-6);
  EXPECT_GT(distill_kl(s->tensor(), t->tensor(), tok, 2.0f).item(), 0.05);
  current_graph().clear();
}

TEST(DistillLoss, StableForHugeLogits) {
  Rng rng(3);
  auto s = test::make_input("s", Shape{4, 17}, rng, 1e4f);
  auto t = test::make_input("t", Shape{4, 17}, rng, 1e4f);
  auto tg = random_targets(rng, 4, 17, false);
  s->zero_grad();
  Tensor l = distill_loss(s->tensor(), t->tensor(), Tokens{tg.data(), Shape{4}}, 0.7f, 0.3f);
  EXPECT_TRUE(std::isfinite(l.item()));
  current_graph().backward(l);
  for (int64_t i = 0; i < s->numel(); ++i) ASSERT_TRUE(std::isfinite(s->grad()[i])) << i;
  current_graph().clear();
}

// Finite differences through gradcheck.h (float32, its documented tolerance),
// for several temperatures and mixes, both pure ends included.
TEST(DistillLoss, GradientCheck) {
  Rng rng(4);
  auto s = test::make_input("s", Shape{2, 3, 7}, rng);
  auto t = test::make_input("t", Shape{2, 3, 7}, rng);
  auto tg = random_targets(rng, 6, 7, true);
  for (float T : {0.5f, 1.0f, 2.0f, 4.0f})
    for (float a : {0.0f, 0.3f, 0.7f, 1.0f})
      EXPECT_TRUE(test::grad_check(
          [&] {
            return distill_loss(s->tensor(), t->tensor(), Tokens{tg.data(), Shape{2, 3}}, T, a);
          },
          {s.get()}))
          << "T " << T << " alpha " << a;
}

// The analytic gradient against the brief's formula in double, far tighter
// than finite differences allow.
TEST(DistillLoss, GradientIsTheMixedSoftmaxDifference) {
  Rng rng(5);
  auto s = test::make_input("s", Shape{40, 11}, rng, 2.0f);
  auto t = test::make_input("t", Shape{40, 11}, rng, 2.0f);
  auto tg = random_targets(rng, 40, 11, true);
  for (float T : {0.5f, 2.0f, 3.0f})
    for (float a : {0.0f, 0.5f, 1.0f}) {
      s->zero_grad();
      Graph& g = current_graph();
      Tensor l = distill_loss(s->tensor(), t->tensor(), Tokens{tg.data(), Shape{40}}, T, a);
      g.backward(l);
      std::vector<double> want;
      ref_loss(s->data(), t->data(), tg, 11, T, a, &want);
      for (int64_t i = 0; i < s->numel(); ++i)
        ASSERT_NEAR(s->grad()[i], want[size_t(i)], 2e-6) << "T " << T << " a " << a << " i " << i;
      g.clear();
    }
}

TEST(DistillLoss, AlphaOneIsCrossEntropyBitForBit) {
  Rng rng(6);
  auto s = test::make_input("s", Shape{64, 29}, rng, 2.0f);
  auto t = test::make_input("t", Shape{64, 29}, rng, 2.0f);
  auto tg = random_targets(rng, 64, 29, true);
  const Tokens tok{tg.data(), Shape{64}};
  Graph& g = current_graph();
  s->zero_grad();
  Tensor ce = cross_entropy(s->tensor(), tok);
  const float ce_value = ce.item();
  g.backward(ce, 0.25f);
  const std::vector<float> ce_grad(s->grad(), s->grad() + s->numel());
  g.clear();
  s->zero_grad();
  Tensor d = distill_loss(s->tensor(), t->tensor(), tok, 2.0f, 1.0f);
  const float d_value = d.item();
  g.backward(d, 0.25f);
  EXPECT_EQ(std::memcmp(&ce_value, &d_value, sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(ce_grad.data(), s->grad(), ce_grad.size() * sizeof(float)), 0);
  g.clear();
}

TEST(DistillLoss, TeacherGetsNoGradient) {
  Rng rng(7);
  auto s = test::make_input("s", Shape{5, 9}, rng);
  auto t = test::make_input("t", Shape{5, 9}, rng);
  auto tg = random_targets(rng, 5, 9, false);
  s->zero_grad();
  t->zero_grad();
  Tensor l = distill_loss(s->tensor(), t->tensor(), Tokens{tg.data(), Shape{5}}, 2.0f, 0.5f);
  current_graph().backward(l);
  double ts = 0, ss = 0;
  for (int64_t i = 0; i < t->numel(); ++i) ts += std::abs(t->grad()[i]);
  for (int64_t i = 0; i < s->numel(); ++i) ss += std::abs(s->grad()[i]);
  EXPECT_EQ(ts, 0.0);
  EXPECT_GT(ss, 0.0);
  current_graph().clear();
}

TEST(DistillLoss, RejectsBadArguments) {
  Rng rng(8);
  auto s = test::make_input("s", Shape{3, 9}, rng);
  auto t = test::make_input("t", Shape{3, 9}, rng);
  auto t2 = test::make_input("t2", Shape{3, 8}, rng);
  std::vector<int32_t> tg = {0, 1, 2}, bad = {0, 9, 1};
  const Tokens tok{tg.data(), Shape{3}};
  auto msg = [&](auto f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      current_graph().clear();
      return std::string(e.what());
    }
    current_graph().clear();
    return std::string("no error");
  };
  EXPECT_NE(msg([&] {
              distill_loss(s->tensor(), t->tensor(), tok, 0.0f, 0.5f);
            }).find("temperature must be > 0"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              distill_loss(s->tensor(), t->tensor(), tok, 2.0f, 1.5f);
            }).find("alpha must be in [0, 1]"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              distill_loss(s->tensor(), t->tensor(), tok, 2.0f, -0.1f);
            }).find("alpha must be in [0, 1]"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              distill_loss(s->tensor(), t2->tensor(), tok, 2.0f, 0.5f);
            }).find("same vocabulary"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              distill_kl(s->tensor(), t->tensor(), Tokens{bad.data(), Shape{3}}, 2.0f);
            }).find("out of range"),
            std::string::npos);
}

}  // namespace
}  // namespace bl
