// Elementwise arithmetic (every broadcast pattern and code path) and reductions.
#include "ops/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "ops/reduce.h"

namespace bl {
namespace {

enum class Op { kAdd, kSub, kMul, kDiv };
const Op kOps[] = {Op::kAdd, Op::kSub, Op::kMul, Op::kDiv};

const char* op_name(Op op) {
  switch (op) {
    case Op::kAdd:
      return "add";
    case Op::kSub:
      return "sub";
    case Op::kMul:
      return "mul";
    case Op::kDiv:
      return "div";
  }
  return "";
}

Tensor run(Op op, const Tensor& a, const Tensor& b) {
  switch (op) {
    case Op::kAdd:
      return add(a, b);
    case Op::kSub:
      return sub(a, b);
    case Op::kMul:
      return mul(a, b);
    case Op::kDiv:
      return div(a, b);
  }
  return Tensor();
}

double ref_f(Op op, double a, double b) {
  switch (op) {
    case Op::kAdd:
      return a + b;
    case Op::kSub:
      return a - b;
    case Op::kMul:
      return a * b;
    case Op::kDiv:
      return a / b;
  }
  return 0;
}
double ref_da(Op op, double a, double b) {
  return op == Op::kMul ? b : op == Op::kDiv ? 1.0 / b : 1.0;
}
double ref_db(Op op, double a, double b) {
  return op == Op::kAdd ? 1.0 : op == Op::kSub ? -1.0 : op == Op::kMul ? a : -a / (b * b);
}

// Flat index into x of output element `flat` under NumPy broadcasting.
int64_t bcast_index(const Shape& x, const Shape& out, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int i = out.rank - 1; i >= 0; --i) {
    const int64_t oi = flat % out.dims[i];
    flat /= out.dims[i];
    const int xi = i - (out.rank - x.rank);
    if (xi < 0) continue;
    if (x.dims[xi] != 1) idx += oi * stride;
    stride *= x.dims[xi];
  }
  return idx;
}

// Keeps divisors away from zero so a / b and its finite differences are tame.
void away_from_zero(Parameter& p, float margin) {
  for (int64_t i = 0; i < p.numel(); ++i) {
    float& v = p.data()[i];
    v = v >= 0 ? v + margin : v - margin;
  }
}

struct Pattern {
  const char* name;
  Shape a, b, out;
};

// Every broadcast pattern the brief asks for, plus each code path of the op:
// same shape, b or a a trailing suffix (fast paths), and general strided ones.
std::vector<Pattern> patterns() {
  return {
      {"same", Shape{2, 3, 4}, Shape{2, 3, 4}, Shape{2, 3, 4}},
      {"same_rank_differs", Shape{1, 3}, Shape{3}, Shape{1, 3}},
      {"suffix_matrix", Shape{2, 3, 4}, Shape{3, 4}, Shape{2, 3, 4}},
      {"suffix_vector", Shape{5, 4}, Shape{4}, Shape{5, 4}},
      {"suffix_with_leading_1", Shape{2, 3, 4}, Shape{1, 1, 4}, Shape{2, 3, 4}},
      {"middle_1", Shape{2, 3, 4}, Shape{2, 1, 4}, Shape{2, 3, 4}},
      {"trailing_1", Shape{2, 3, 4}, Shape{2, 3, 1}, Shape{2, 3, 4}},
      {"scalar_b", Shape{2, 3, 4}, Shape{1}, Shape{2, 3, 4}},
      {"scalar_a", Shape{1}, Shape{3, 4}, Shape{3, 4}},
      {"a_suffix", Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 4}},
      {"a_middle_1", Shape{2, 1, 4}, Shape{2, 3, 4}, Shape{2, 3, 4}},
      {"both_broadcast", Shape{2, 1, 4}, Shape{3, 1}, Shape{2, 3, 4}},
      {"rank4", Shape{2, 1, 3, 4}, Shape{5, 1, 1}, Shape{2, 5, 3, 4}},
      {"rank4_outer", Shape{2, 5, 3, 4}, Shape{2, 1, 1, 4}, Shape{2, 5, 3, 4}},
  };
}

TEST(Broadcast, Shapes) {
  EXPECT_EQ(broadcast_shape(Shape{2, 3, 4}, Shape{3, 4}), (Shape{2, 3, 4}));
  EXPECT_EQ(broadcast_shape(Shape{2, 1, 4}, Shape{3, 1}), (Shape{2, 3, 4}));
  EXPECT_EQ(broadcast_shape(Shape{1}, Shape{5, 6}), (Shape{5, 6}));
  EXPECT_EQ(broadcast_shape(Shape{7}, Shape{1}), (Shape{7}));
  EXPECT_EQ(broadcast_shape(Shape{2, 1, 3, 4}, Shape{5, 1, 1}), (Shape{2, 5, 3, 4}));
  for (const Pattern& p : patterns()) EXPECT_EQ(broadcast_shape(p.a, p.b), p.out) << p.name;
  try {
    broadcast_shape(Shape{2, 3}, Shape{4, 3});
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[broadcast]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos) << e.what();
  }
}

TEST(Elementwise, ForwardMatchesNaive) {
  Rng rng(1);
  for (const Pattern& p : patterns()) {
    auto a = test::make_input("a", p.a, rng);
    auto b = test::make_input("b", p.b, rng);
    away_from_zero(*b, 0.5f);
    for (Op op : kOps) {
      Tensor y = run(op, a->tensor(), b->tensor());
      ASSERT_EQ(y.shape(), p.out) << p.name << " " << op_name(op);
      for (int64_t i = 0; i < y.numel(); ++i) {
        const double ref =
            ref_f(op, a->data()[bcast_index(p.a, p.out, i)], b->data()[bcast_index(p.b, p.out, i)]);
        ASSERT_NEAR(y.data()[i], ref, 1e-5 * (1 + std::abs(ref)))
            << p.name << " " << op_name(op) << " element " << i;
      }
    }
    current_graph().clear();
  }
}

TEST(Elementwise, GradientEveryOpAndPattern) {
  Rng rng(2);
  for (const Pattern& p : patterns()) {
    auto a = test::make_input("a", p.a, rng);
    auto b = test::make_input("b", p.b, rng);
    away_from_zero(*b, 0.5f);
    for (Op op : kOps) {
      EXPECT_TRUE(
          test::grad_check([&] { return run(op, a->tensor(), b->tensor()); }, {a.get(), b.get()}))
          << p.name << " " << op_name(op);
    }
  }
}

TEST(Elementwise, GradientOnlyOneSideRequiresGrad) {
  Rng rng(3);
  for (const Pattern& p : patterns()) {
    auto a = test::make_input("a", p.a, rng);
    auto b = test::make_input("b", p.b, rng);
    away_from_zero(*b, 0.5f);
    b->set_trainable(false);
    EXPECT_TRUE(test::grad_check([&] { return mul(a->tensor(), b->tensor()); }, {a.get()}))
        << p.name;
    b->set_trainable(true);
    a->set_trainable(false);
    EXPECT_TRUE(test::grad_check([&] { return div(a->tensor(), b->tensor()); }, {b.get()}))
        << p.name;
  }
}

TEST(Elementwise, SameTensorOnBothSides) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{3, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return mul(x->tensor(), x->tensor()); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return add(x->tensor(), x->tensor()); }, {x.get()}));
}

// Big enough for every parallel branch (several chunks, per-thread partials);
// forward and backward against a double-precision naive reference.
// Intermediate operands of add (and sub's left side) take dy's gradient
// buffer instead of a copy (Graph::share_grad). The residual-stream pattern:
// the shared operand later gets more gradient from its other consumer, the
// other operand's producer reads its own, and sub's right side must not share
// (its gradient is -dy).
TEST(Elementwise, SharedGradientBuffersInResidualChains) {
  Rng rng(11);
  auto x = test::make_input("x", Shape{3, 5}, rng);
  auto c = test::make_input("c", Shape{3, 5}, rng);
  for (Op op : {Op::kAdd, Op::kSub}) {
    EXPECT_TRUE(test::grad_check(
        [&] {
          const Tensor u = mul(x->tensor(), c->tensor());  // intermediate, no buffer yet
          const Tensor z = run(op, u, mul(u, u));          // u: shared; u*u: own buffer
          const Tensor w = run(op, mul(z, c->tensor()), z);
          return run(op, w, mul(w, w));
        },
        {x.get(), c.get()}))
        << op_name(op);
  }
  // The shared operand's gradient is dy's buffer, and the values are right.
  Graph& g = current_graph();
  g.clear();
  const Tensor u = mul(x->tensor(), c->tensor());
  const Tensor v = mul(c->tensor(), c->tensor());
  const Tensor z = add(u, v);
  float* dz = g.grad(z);
  for (int64_t i = 0; i < z.numel(); ++i) dz[i] = float(i);
  g.run_tape();
  EXPECT_EQ(u.grad(), dz);
  ASSERT_NE(v.grad(), nullptr);
  EXPECT_NE(v.grad(), dz);
  for (int64_t i = 0; i < z.numel(); ++i) EXPECT_EQ(v.grad()[i], float(i));
  g.clear();
}

TEST(Elementwise, LargeShapesMatchNaiveForwardAndBackward) {
  Rng rng(5);
  const std::vector<Pattern> big = {
      {"same", Shape{256, 1024}, Shape{256, 1024}, Shape{256, 1024}},
      {"suffix", Shape{64, 128, 32}, Shape{128, 32}, Shape{64, 128, 32}},
      {"suffix_vector", Shape{4096, 64}, Shape{64}, Shape{4096, 64}},
      {"scalar", Shape{300000}, Shape{1}, Shape{300000}},
      {"a_suffix", Shape{32}, Shape{8192, 32}, Shape{8192, 32}},
      {"middle_1", Shape{64, 128, 32}, Shape{64, 1, 32}, Shape{64, 128, 32}},
      {"rank4_mask", Shape{1, 1, 64, 64}, Shape{4, 8, 64, 64}, Shape{4, 8, 64, 64}},
  };
  for (const Pattern& p : big) {
    auto a = test::make_input("a", p.a, rng);
    auto b = test::make_input("b", p.b, rng);
    away_from_zero(*b, 0.5f);
    for (Op op : kOps) {
      Graph& g = current_graph();
      g.clear();
      a->zero_grad();
      b->zero_grad();
      Tensor y = run(op, a->tensor(), b->tensor());
      ASSERT_EQ(y.shape(), p.out);
      float* gy = g.grad(y);
      std::vector<double> ga(size_t(a->numel()), 0.0), gb(size_t(b->numel()), 0.0);
      for (int64_t i = 0; i < y.numel(); ++i) {
        gy[i] = float(rng.normal());
        const int64_t ia = bcast_index(p.a, p.out, i), ib = bcast_index(p.b, p.out, i);
        const double av = a->data()[ia], bv = b->data()[ib];
        const double ref = ref_f(op, av, bv);
        ASSERT_NEAR(y.data()[i], ref, 1e-5 * (1 + std::abs(ref)))
            << p.name << " " << op_name(op) << " element " << i;
        ga[size_t(ia)] += gy[i] * ref_da(op, av, bv);
        gb[size_t(ib)] += gy[i] * ref_db(op, av, bv);
      }
      g.run_tape();
      for (int64_t i = 0; i < a->numel(); ++i)
        ASSERT_NEAR(a->grad()[i], ga[size_t(i)], 1e-4 * (1 + std::abs(ga[size_t(i)])))
            << p.name << " " << op_name(op) << " da " << i;
      for (int64_t i = 0; i < b->numel(); ++i)
        ASSERT_NEAR(b->grad()[i], gb[size_t(i)], 1e-4 * (1 + std::abs(gb[size_t(i)])))
            << p.name << " " << op_name(op) << " db " << i;
      g.clear();
    }
  }
}

TEST(Elementwise, ScaleAndAddScalar) {
  Rng rng(6);
  auto x = test::make_input("x", Shape{3, 7}, rng);
  Tensor s = scale(x->tensor(), -2.5f);
  Tensor t = add_scalar(x->tensor(), 0.75f);
  for (int64_t i = 0; i < x->numel(); ++i) {
    EXPECT_FLOAT_EQ(s.data()[i], x->data()[i] * -2.5f);
    EXPECT_FLOAT_EQ(t.data()[i], x->data()[i] + 0.75f);
  }
  current_graph().clear();
  EXPECT_TRUE(test::grad_check([&] { return scale(x->tensor(), -2.5f); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return add_scalar(x->tensor(), 0.75f); }, {x.get()}));
}

TEST(Elementwise, ShapeErrorsNameTheOp) {
  Rng rng(7);
  auto a = test::make_input("a", Shape{2, 3}, rng);
  auto b = test::make_input("b", Shape{4, 3}, rng);
  for (Op op : kOps) {
    try {
      run(op, a->tensor(), b->tensor());
      FAIL() << "expected throw from " << op_name(op);
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("[") + op_name(op) + "]"), std::string::npos) << msg;
      EXPECT_NE(msg.find("(4, 3)"), std::string::npos) << msg;
    }
  }
  current_graph().clear();
}

TEST(Elementwise, NoGradModeRecordsNothing) {
  Rng rng(8);
  auto a = test::make_input("a", Shape{2, 3}, rng);
  auto b = test::make_input("b", Shape{3}, rng);
  Graph& g = current_graph();
  g.clear();
  {
    NoGradGuard ng;
    Tensor y = mul(a->tensor(), b->tensor());
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(g.tape_size(), 0u);
  }
  Tensor y = mul(a->tensor(), b->tensor());
  EXPECT_TRUE(y.requires_grad());
  EXPECT_EQ(g.tape_size(), 1u);
  g.clear();
}

TEST(Reduce, SumAndMeanValues) {
  Rng rng(9);
  auto x = test::make_input("x", Shape{4, 5, 6}, rng);
  double ref = 0;
  for (int64_t i = 0; i < x->numel(); ++i) ref += x->data()[i];
  Tensor s = sum(x->tensor());
  Tensor m = mean(x->tensor());
  EXPECT_EQ(s.shape(), (Shape{1}));
  EXPECT_EQ(m.shape(), (Shape{1}));
  EXPECT_NEAR(s.item(), ref, 1e-4);
  EXPECT_NEAR(m.item(), ref / 120.0, 1e-6);
  current_graph().clear();
}

// Two million values of 0.1f: float accumulation would drift by percent-level;
// the double accumulator is exact to float rounding.
TEST(Reduce, LargeSumIsAccurate) {
  Parameter x("x", Shape{2000, 1000});
  x.fill(0.1f);
  const double ref = double(0.1f) * 2e6;
  EXPECT_NEAR(sum(x.tensor()).item(), ref, ref * 1e-6);
  EXPECT_NEAR(mean(x.tensor()).item(), double(0.1f), 1e-7);
  current_graph().clear();
}

TEST(Reduce, Gradients) {
  Rng rng(10);
  auto x = test::make_input("x", Shape{3, 4, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return sum(x->tensor()); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return mean(x->tensor()); }, {x.get()}));
  // Loss-style use: backward from a mean over a product.
  auto w = test::make_input("w", Shape{5}, rng);
  EXPECT_TRUE(
      test::grad_check([&] { return mean(mul(x->tensor(), w->tensor())); }, {x.get(), w.get()}));
  Graph& g = current_graph();
  g.clear();
  x->zero_grad();
  g.backward(mean(x->tensor()));
  for (int64_t i = 0; i < x->numel(); ++i) EXPECT_FLOAT_EQ(x->grad()[i], 1.0f / 60.0f);
  g.clear();
}

}  // namespace
}  // namespace bl
