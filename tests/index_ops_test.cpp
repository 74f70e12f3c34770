// The ops behind mixture-of-experts dispatch: row gather / weighted scatter-add,
// take_along_rows, row_sum / logsumexp_rows and the grouped (per-expert) linear.
// Values against direct loops, gradients against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "expect_error.h"
#include "gradcheck.h"
#include "ops/grouped_linear.h"
#include "ops/index.h"
#include "ops/row_reduce.h"

namespace bl {
namespace {

TEST(IndexOps, GatherRowsValuesAndGradient) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{2, 3, 5}, rng);     // viewed as (6, 5)
  const std::vector<int32_t> idx = {4, 0, 4, 5, 2, 4, 1};  // repeats (4) and an unused row (3)
  Tensor y = gather_rows(x->tensor(), idx.data(), int64_t(idx.size()));
  ASSERT_EQ(y.shape(), (Shape{7, 5}));
  for (size_t i = 0; i < idx.size(); ++i)
    for (int c = 0; c < 5; ++c) ASSERT_EQ(y.data()[i * 5 + c], x->data()[idx[i] * 5 + c]);
  current_graph().clear();
  EXPECT_TRUE(test::grad_check(
      [&] { return gather_rows(x->tensor(), idx.data(), int64_t(idx.size())); }, {x.get()}));
}

TEST(IndexOps, GatherRowsWideColumnsScatterBackwardInParallelBlocks) {
  // Wide enough to take the column-blocked parallel path of the backward.
  Rng rng(2);
  auto x = test::make_input("x", Shape{40, 300}, rng);
  std::vector<int32_t> idx;
  for (int i = 0; i < 200; ++i) idx.push_back(int32_t((i * 7) % 40));
  EXPECT_TRUE(test::grad_check(
      [&] { return gather_rows(x->tensor(), idx.data(), int64_t(idx.size())); }, {x.get()}));
}

TEST(IndexOps, ScatterAddRowsValuesAndGradient) {
  Rng rng(3);
  auto src = test::make_input("src", Shape{6, 4}, rng);
  auto w = test::make_input("w", Shape{6, 1}, rng);
  const std::vector<int32_t> idx = {2, 0, 2, 3, 0, 2};  // row 1 never hit
  Tensor y = scatter_add_rows(src->tensor(), idx.data(), 4, w->tensor());
  ASSERT_EQ(y.shape(), (Shape{4, 4}));
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      double ref = 0;
      for (size_t i = 0; i < idx.size(); ++i)
        if (idx[i] == r) ref += double(w->data()[i]) * src->data()[i * 4 + c];
      ASSERT_NEAR(y.data()[r * 4 + c], ref, 1e-5);
    }
  current_graph().clear();
  EXPECT_TRUE(
      test::grad_check([&] { return scatter_add_rows(src->tensor(), idx.data(), 4, w->tensor()); },
                       {src.get(), w.get()}));
  // Unweighted.
  EXPECT_TRUE(test::grad_check([&] { return scatter_add_rows(src->tensor(), idx.data(), 4); },
                               {src.get()}));
}

TEST(IndexOps, TakeAlongRowsValuesAndGradient) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{3, 5}, rng);
  const std::vector<int32_t> idx = {4, 1, 0, 0, 2, 3};  // k = 2; row 1 picks column 0 twice
  Tensor y = take_along_rows(x->tensor(), idx.data(), 2);
  ASSERT_EQ(y.shape(), (Shape{3, 2}));
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < 2; ++j) ASSERT_EQ(y.data()[r * 2 + j], x->data()[r * 5 + idx[r * 2 + j]]);
  current_graph().clear();
  EXPECT_TRUE(
      test::grad_check([&] { return take_along_rows(x->tensor(), idx.data(), 2); }, {x.get()}));
}

TEST(IndexOps, RowSumAndLogSumExp) {
  Rng rng(5);
  auto x = test::make_input("x", Shape{2, 3, 4}, rng, 2.0f);
  Tensor s = row_sum(x->tensor());
  Tensor l = logsumexp_rows(x->tensor());
  ASSERT_EQ(s.shape(), (Shape{2, 3, 1}));
  ASSERT_EQ(l.shape(), (Shape{2, 3, 1}));
  for (int r = 0; r < 6; ++r) {
    double sum = 0, se = 0;
    for (int c = 0; c < 4; ++c) {
      sum += x->data()[r * 4 + c];
      se += std::exp(double(x->data()[r * 4 + c]));
    }
    EXPECT_NEAR(s.data()[r], sum, 1e-5);
    EXPECT_NEAR(l.data()[r], std::log(se), 1e-5);
  }
  current_graph().clear();
  EXPECT_TRUE(test::grad_check([&] { return row_sum(x->tensor()); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return logsumexp_rows(x->tensor()); }, {x.get()}));
  // Large logits do not overflow.
  auto big = test::make_input("big", Shape{1, 3}, rng);
  big->data()[0] = 1000.0f, big->data()[1] = 999.0f, big->data()[2] = -5.0f;
  EXPECT_NEAR(logsumexp_rows(big->tensor()).item(), 1000.0 + std::log1p(std::exp(-1.0)), 1e-3);
  current_graph().clear();
}

TEST(IndexOps, GroupedLinearValuesAndGradient) {
  Rng rng(6);
  auto x = test::make_input("x", Shape{7, 3}, rng);
  auto w = test::make_input("w", Shape{4, 5, 3}, rng);
  auto b = test::make_input("b", Shape{4, 5}, rng);
  const std::vector<int64_t> off = {0, 3, 3, 6, 7};  // group 1 is empty
  Tensor y = grouped_linear(x->tensor(), w->tensor(), b->tensor(), off.data());
  ASSERT_EQ(y.shape(), (Shape{7, 5}));
  for (int gi = 0; gi < 4; ++gi)
    for (int64_t r = off[gi]; r < off[gi + 1]; ++r)
      for (int o = 0; o < 5; ++o) {
        double ref = b->data()[gi * 5 + o];
        for (int i = 0; i < 3; ++i)
          ref += double(x->data()[r * 3 + i]) * w->data()[(gi * 5 + o) * 3 + i];
        ASSERT_NEAR(y.data()[r * 5 + o], ref, 1e-5);
      }
  current_graph().clear();
  EXPECT_TRUE(test::grad_check(
      [&] { return grouped_linear(x->tensor(), w->tensor(), b->tensor(), off.data()); },
      {x.get(), w.get(), b.get()}));
  // The empty group's weights and bias get exactly zero gradient.
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(w->grad()[15 + i], 0.0f);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(b->grad()[5 + i], 0.0f);
  EXPECT_TRUE(test::grad_check(
      [&] { return grouped_linear(x->tensor(), w->tensor(), Tensor(), off.data()); },
      {x.get(), w.get()}));
}

TEST(IndexOps, GroupedLinearManySmallGroupsInParallel) {
  // rows < 64 * groups with enough work takes the one-GEMM-per-thread path.
  Rng rng(7);
  auto x = test::make_input("x", Shape{200, 24}, rng);
  auto w = test::make_input("w", Shape{8, 16, 24}, rng);
  const std::vector<int64_t> off = {0, 20, 50, 50, 90, 120, 150, 190, 200};
  EXPECT_TRUE(test::grad_check(
      [&] { return grouped_linear(x->tensor(), w->tensor(), Tensor(), off.data()); },
      {x.get(), w.get()}));
}

TEST(IndexOps, BadArgumentsThrowNamingTheOp) {
  Rng rng(8);
  auto x = test::make_input("x", Shape{3, 2}, rng);
  const std::vector<int32_t> bad = {0, 3};
  auto err = [](auto f) { return test::error_of<std::invalid_argument>(f); };
  EXPECT_TRUE(test::contains(err([&] { gather_rows(x->tensor(), bad.data(), 2); }),
                             "[gather_rows] index 3 at position 1 is outside [0, 3)"));
  EXPECT_TRUE(test::contains(err([&] { scatter_add_rows(x->tensor(), bad.data(), 3); }),
                             "[scatter_add_rows] index 3"));
  EXPECT_TRUE(test::contains(err([&] { take_along_rows(x->tensor(), bad.data(), 1); }),
                             "[take_along_rows] index 3"));
  auto w = test::make_input("w", Shape{2, 4, 5}, rng);
  const std::vector<int64_t> off = {0, 1, 3};
  EXPECT_TRUE(
      test::contains(err([&] { grouped_linear(x->tensor(), w->tensor(), Tensor(), off.data()); }),
                     "[grouped_linear] input (3, 2) does not fit weight (2, 4, 5)"));
  current_graph().clear();
}

}  // namespace
}  // namespace bl
