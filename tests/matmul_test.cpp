#include <gtest/gtest.h>

#include "gradcheck.h"
#include "ops/matmul.h"

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
  EXPECT_TRUE(test::grad_check([&] { return matmul(a->tensor(), b->tensor()); }, {a.get(), b.get()}));
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
