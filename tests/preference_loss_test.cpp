// The ops of preference optimization: sequence_logprob (per-sequence sums of
// the fused log-softmax, on every kernel ISA) and dpo_loss, each against a
// double reference and by finite differences, alone and composed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "expect_error.h"
#include "gradcheck.h"
#include "ops/cross_entropy.h"
#include "ops/dpo_loss.h"
#include "ops/grpo_loss.h"

namespace bl {
namespace {

// Targets for (n, t): random ids, every third one ignored (-1), and sequence
// 1 with none scored at all.
std::vector<int32_t> targets_for(Rng& rng, int64_t n, int64_t t, int64_t v) {
  std::vector<int32_t> y(size_t(n * t));
  for (size_t i = 0; i < y.size(); ++i) y[i] = i % 3 == 1 ? -1 : int32_t(rng.below(uint64_t(v)));
  if (n > 1)
    for (int64_t j = 0; j < t; ++j) y[size_t(t + j)] = -1;
  return y;
}

double ref_seq_logprob(const float* x, const int32_t* y, int64_t t, int64_t v) {
  double total = 0;
  for (int64_t j = 0; j < t; ++j) {
    if (y[j] < 0) continue;
    const float* row = x + j * v;
    double m = -1e300, s = 0;
    for (int64_t k = 0; k < v; ++k) m = std::max(m, double(row[k]));
    for (int64_t k = 0; k < v; ++k) s += std::exp(double(row[k]) - m);
    total += double(row[y[j]]) - m - std::log(s);
  }
  return total;
}

TEST(SequenceLogprob, MatchesDoubleReference) {
  // V = 67 leaves a vector tail on every ISA; T = 5 rows per sequence.
  const int64_t n = 4, t = 5, v = 67;
  Rng rng(3);
  auto logits = test::make_input("logits", Shape{n, t, v}, rng, 2.0f);
  const auto y = targets_for(rng, n, t, v);
  Tensor lp = sequence_logprob(logits->tensor(), Tokens{y.data(), Shape{n, t}});
  ASSERT_EQ(lp.shape(), (Shape{n}));
  for (int64_t i = 0; i < n; ++i) {
    const double want = ref_seq_logprob(logits->data() + i * t * v, y.data() + i * t, t, v);
    EXPECT_NEAR(lp.data()[i], want, 1e-5 * (1 + std::fabs(want))) << "sequence " << i;
  }
  EXPECT_EQ(lp.data()[1], 0.0f);  // nothing scored
  current_graph().clear();
}

TEST(SequenceLogprob, GradientCheck) {
  const int64_t n = 3, t = 4, v = 19;
  Rng rng(5);
  auto logits = test::make_input("logits", Shape{n, t, v}, rng);
  const auto y = targets_for(rng, n, t, v);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return sequence_logprob(logits->tensor(), Tokens{y.data(), Shape{n, t}});
      },
      {logits.get()}));
}

TEST(SequenceLogprob, RefusesMismatchedShapesAndTargets) {
  Rng rng(1);
  auto logits = test::make_input("logits", Shape{2, 3, 5}, rng);
  std::vector<int32_t> y(6, 1);
  EXPECT_PRED2(test::contains, test::error_of([&] {
                 (void)sequence_logprob(logits->tensor(), Tokens{y.data(), Shape{2, 2}});
               }),
               std::string("[sequence_logprob] targets (2, 2) do not match logits (2, 3, 5)"));
  y[4] = 5;
  EXPECT_PRED2(test::contains, test::error_of([&] {
                 (void)sequence_logprob(logits->tensor(), Tokens{y.data(), Shape{2, 3}});
               }),
               std::string("target 5 at index 4 is out of range for vocab size V = 5"));
  auto flat = test::make_input("flat", Shape{6, 5}, rng);
  EXPECT_PRED2(test::contains, test::error_of([&] {
                 (void)sequence_logprob(flat->tensor(), Tokens{y.data(), Shape{6}});
               }),
               std::string("logits must be (N, T, V)"));
  current_graph().clear();
}

double ref_dpo(const std::vector<double>& lp, const std::vector<double>& ref, double beta,
               DpoParts* parts) {
  const size_t b = lp.size() / 2;
  double total = 0;
  DpoParts p;
  for (size_t i = 0; i < b; ++i) {
    const double rc = beta * (lp[i] - ref[i]), rr = beta * (lp[b + i] - ref[b + i]);
    total += -std::log(1.0 / (1.0 + std::exp(-(rc - rr))));
    p.chosen_reward += rc / double(b);
    p.rejected_reward += rr / double(b);
    p.accuracy += (rc > rr ? 1.0 : 0.0) / double(b);
  }
  p.margin = p.chosen_reward - p.rejected_reward;
  *parts = p;
  return total / double(b);
}

TEST(DpoLoss, MatchesTheFormulaAndReportsTheRewards) {
  Rng rng(11);
  const int64_t pairs = 5;
  auto lp = test::make_input("logp", Shape{2 * pairs}, rng, 3.0f);
  std::vector<float> ref(size_t(2 * pairs));
  for (auto& r : ref) r = float(rng.normal() * 3.0);
  for (float beta : {0.1f, 0.5f, 2.0f}) {
    DpoParts got, want;
    Tensor l = dpo_loss(lp->tensor(), ref.data(), beta, &got);
    std::vector<double> lpd(lp->data(), lp->data() + 2 * pairs), refd(ref.begin(), ref.end());
    const double w = ref_dpo(lpd, refd, beta, &want);
    EXPECT_NEAR(l.item(), w, 1e-6 * (1 + w)) << "beta " << beta;
    EXPECT_NEAR(got.chosen_reward, want.chosen_reward, 1e-6);
    EXPECT_NEAR(got.rejected_reward, want.rejected_reward, 1e-6);
    EXPECT_NEAR(got.margin, want.margin, 1e-6);
    EXPECT_DOUBLE_EQ(got.accuracy, want.accuracy);
    current_graph().clear();
  }
  // The policy equal to its reference: every margin 0, loss log 2, accuracy 0.
  std::vector<float> same(lp->data(), lp->data() + 2 * pairs);
  DpoParts p;
  EXPECT_NEAR(dpo_loss(lp->tensor(), same.data(), 0.1f, &p).item(), std::log(2.0), 1e-6);
  EXPECT_EQ(p.accuracy, 0.0);
  EXPECT_EQ(p.margin, 0.0);
  current_graph().clear();
}

TEST(DpoLoss, StableForLargeMargins) {
  Rng rng(2);
  auto lp = test::make_input("logp", Shape{2}, rng);
  lp->data()[0] = 0.0f;
  lp->data()[1] = -4000.0f;  // beta * margin = +400: loss ~ 0, no overflow
  std::vector<float> ref = {0.0f, 0.0f};
  EXPECT_NEAR(dpo_loss(lp->tensor(), ref.data(), 0.1f).item(), 0.0, 1e-12);
  lp->data()[1] = 4000.0f;  // -400: loss ~ 400
  EXPECT_NEAR(dpo_loss(lp->tensor(), ref.data(), 0.1f).item(), 400.0, 1e-3);
  current_graph().clear();
}

TEST(DpoLoss, GradientCheck) {
  Rng rng(7);
  auto lp = test::make_input("logp", Shape{6}, rng, 2.0f);
  std::vector<float> ref(6);
  for (auto& r : ref) r = float(rng.normal());
  for (float beta : {0.1f, 1.0f, 3.0f})
    EXPECT_TRUE(
        test::grad_check([&] { return dpo_loss(lp->tensor(), ref.data(), beta); }, {lp.get()}))
        << "beta " << beta;
}

// The composition a DPO step differentiates: logits -> sequence log-probs -> loss.
TEST(DpoLoss, GradientCheckThroughSequenceLogprob) {
  const int64_t pairs = 2, t = 4, v = 11;
  Rng rng(9);
  auto logits = test::make_input("logits", Shape{2 * pairs, t, v}, rng);
  std::vector<int32_t> y(size_t(2 * pairs * t));
  for (size_t i = 0; i < y.size(); ++i) y[i] = i % 4 == 0 ? -1 : int32_t(rng.below(uint64_t(v)));
  std::vector<float> ref = {-9.0f, -8.0f, -10.0f, -7.5f};
  EXPECT_TRUE(test::grad_check(
      [&] {
        return dpo_loss(sequence_logprob(logits->tensor(), Tokens{y.data(), Shape{2 * pairs, t}}),
                        ref.data(), 0.5f);
      },
      {logits.get()}));
}

TEST(DpoLoss, RefusesBadInput) {
  Rng rng(1);
  auto odd = test::make_input("odd", Shape{3}, rng);
  std::vector<float> ref(4, 0.0f);
  EXPECT_PRED2(test::contains,
               test::error_of([&] { (void)dpo_loss(odd->tensor(), ref.data(), 0.1f); }),
               std::string("[dpo_loss] policy log-probabilities"));
  auto ok = test::make_input("ok", Shape{4}, rng);
  EXPECT_PRED2(test::contains,
               test::error_of([&] { (void)dpo_loss(ok->tensor(), ref.data(), 0.0f); }),
               std::string("beta must be > 0"));
  EXPECT_PRED2(test::contains,
               test::error_of([&] { (void)dpo_loss(ok->tensor(), ref.data(), NAN); }),
               std::string("beta must be > 0"));
  current_graph().clear();
}

TEST(TokenLogprob, MatchesDoubleReferenceAndIgnoresUnscored) {
  const int64_t n = 3, t = 4, v = 67;
  Rng rng(13);
  auto logits = test::make_input("logits", Shape{n, t, v}, rng, 2.0f);
  const auto y = targets_for(rng, n, t, v);
  Tensor lp = token_logprob(logits->tensor(), Tokens{y.data(), Shape{n, t}});
  ASSERT_EQ(lp.shape(), (Shape{n, t}));
  for (int64_t r = 0; r < n * t; ++r) {
    const double want = ref_seq_logprob(logits->data() + r * v, y.data() + r, 1, v);
    EXPECT_NEAR(lp.data()[r], want, 1e-5 * (1 + std::fabs(want))) << "row " << r;
    if (y[size_t(r)] < 0) EXPECT_EQ(lp.data()[r], 0.0f);
  }
  current_graph().clear();
}

TEST(TokenLogprob, GradientCheck) {
  const int64_t n = 2, t = 3, v = 13;
  Rng rng(17);
  auto logits = test::make_input("logits", Shape{n, t, v}, rng);
  const auto y = targets_for(rng, n, t, v);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return token_logprob(logits->tensor(), Tokens{y.data(), Shape{n, t}});
      },
      {logits.get()}));
}

// Double reference of the GRPO surrogate (the formula in ops/grpo_loss.h).
double ref_grpo(const float* lp, const std::vector<int32_t>& scored, const std::vector<float>& adv,
                const std::vector<float>& old, const std::vector<float>& ref, int64_t n, int64_t t,
                double eps, double beta) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t len = 0;
    for (int64_t j = 0; j < t; ++j) len += scored[size_t(i * t + j)] >= 0;
    for (int64_t j = 0; j < t; ++j) {
      const size_t k = size_t(i * t + j);
      if (scored[k] < 0) continue;
      const double r = std::exp(double(lp[k]) - old[k]);
      const double surr =
          std::min(r * adv[size_t(i)], std::clamp(r, 1 - eps, 1 + eps) * adv[size_t(i)]);
      const double d = double(ref[k]) - lp[k], kl = std::exp(d) - d - 1;
      total += -(surr - beta * kl) / double(len) / double(n);
    }
  }
  return total;
}

struct GrpoCase {
  int64_t n = 3, t = 4;
  std::unique_ptr<Parameter> lp;
  std::vector<int32_t> scored;
  std::vector<float> adv, old, ref;
  explicit GrpoCase(uint64_t seed) {
    Rng rng(seed);
    lp = test::make_input("logp", Shape{n, t}, rng, 0.5f);
    for (int64_t k = 0; k < n * t; ++k) {
      lp->data()[k] -= 2.0f;  // log-probabilities: negative
      scored.push_back(k % 4 == 0 ? -1 : 1);
      // Ratios well inside or well outside [0.8, 1.2]: finite differences never cross a kink.
      const float shift = (k % 3 == 0) ? 0.6f : (k % 3 == 1 ? -0.05f : 0.05f);
      old.push_back(lp->data()[k] - shift);
      ref.push_back(lp->data()[k] + float(rng.normal()) * 0.3f);
    }
    adv = {1.2f, -0.7f, 0.4f};
  }
};

TEST(GrpoLoss, MatchesTheFormulaAndReportsKlAndClipping) {
  GrpoCase c(21);
  for (float beta : {0.0f, 0.04f, 0.5f}) {
    GrpoParts parts;
    Tensor l = grpo_loss(c.lp->tensor(), Tokens{c.scored.data(), Shape{c.n, c.t}}, c.adv.data(),
                         c.old.data(), c.ref.data(), 0.2f, beta, &parts);
    const double want = ref_grpo(c.lp->data(), c.scored, c.adv, c.old, c.ref, c.n, c.t, 0.2, beta);
    EXPECT_NEAR(l.item(), want, 1e-5 * (1 + std::fabs(want))) << "beta " << beta;
    EXPECT_GT(parts.kl, 0.0);
    EXPECT_NEAR(parts.clip_fraction, 3.0 / 9.0, 1e-12);  // the k % 3 == 0 scored tokens
    current_graph().clear();
  }
  // Without old values the ratio is 1: the loss is -mean advantage + beta KL.
  Tensor l = grpo_loss(c.lp->tensor(), Tokens{c.scored.data(), Shape{c.n, c.t}}, c.adv.data(),
                       nullptr, c.ref.data(), 0.2f, 0.0f);
  EXPECT_NEAR(l.item(), -(1.2 - 0.7 + 0.4) / 3.0, 1e-6);
  current_graph().clear();
}

TEST(GrpoLoss, GradientCheck) {
  GrpoCase c(23);
  for (float beta : {0.0f, 0.1f, 1.0f})
    EXPECT_TRUE(test::grad_check(
        [&] {
          return grpo_loss(c.lp->tensor(), Tokens{c.scored.data(), Shape{c.n, c.t}}, c.adv.data(),
                           c.old.data(), c.ref.data(), 0.2f, beta);
        },
        {c.lp.get()}))
        << "beta " << beta;
}

// The composition a GRPO step differentiates: logits -> token log-probs -> loss.
TEST(GrpoLoss, GradientCheckThroughTokenLogprob) {
  const int64_t n = 2, t = 3, v = 11;
  Rng rng(29);
  auto logits = test::make_input("logits", Shape{n, t, v}, rng);
  std::vector<int32_t> y = {3, 4, -1, 7, -1, 2};
  std::vector<float> adv = {0.9f, -0.9f}, old(6), ref(6);
  {
    Tensor lp = token_logprob(logits->tensor(), Tokens{y.data(), Shape{n, t}});
    for (int k = 0; k < 6; ++k) {
      old[size_t(k)] = lp.data()[k] - 0.03f;
      ref[size_t(k)] = lp.data()[k] + 0.2f;
    }
    current_graph().clear();
  }
  EXPECT_TRUE(test::grad_check(
      [&] {
        return grpo_loss(token_logprob(logits->tensor(), Tokens{y.data(), Shape{n, t}}),
                         Tokens{y.data(), Shape{n, t}}, adv.data(), old.data(), ref.data(), 0.2f,
                         0.1f);
      },
      {logits.get()}));
}

}  // namespace
}  // namespace bl
