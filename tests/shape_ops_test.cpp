// reshape (a view sharing data and gradient), transpose, slice, concat.
#include "ops/shape_ops.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gradcheck.h"
#include "ops/elementwise.h"

namespace bl {
namespace {

// Throws-with-tag check: the message must name the op as "[op]".
template <class F>
void expect_error(F&& f, const std::string& tag) {
  try {
    f();
    ADD_FAILURE() << "expected a throw tagged " << tag;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(tag), std::string::npos) << e.what();
  }
  current_graph().clear();
}

// Row-major flat index of a multi-index.
int64_t flat(const Shape& s, const int64_t* idx) {
  int64_t f = 0;
  for (int i = 0; i < s.rank; ++i) f = f * s.dims[i] + idx[i];
  return f;
}
void unflat(const Shape& s, int64_t f, int64_t* idx) {
  for (int i = s.rank - 1; i >= 0; --i) {
    idx[i] = f % s.dims[i];
    f /= s.dims[i];
  }
}

TEST(Reshape, IsAViewOfTheSameData) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{2, 3, 4}, rng);
  Tensor y = reshape(x->tensor(), Shape{6, 4});
  EXPECT_EQ(y.shape(), (Shape{6, 4}));
  EXPECT_EQ(y.data(), x->data());
  EXPECT_TRUE(y.requires_grad());
  EXPECT_EQ(y.grad(), x->grad());  // the parameter's own gradient buffer
  EXPECT_EQ(current_graph().tape_size(), 0u);
  current_graph().clear();
}

TEST(Reshape, SharesTheGradientOfAnIntermediate) {
  Graph& g = current_graph();
  g.clear();
  Rng rng(2);
  auto x = test::make_input("x", Shape{2, 6}, rng);
  Tensor h = mul(x->tensor(), x->tensor());
  Tensor v = reshape(h, Shape{3, 4});
  ASSERT_NE(h.grad(), nullptr);  // made to exist so the view can share it
  EXPECT_EQ(v.grad(), h.grad());
  g.clear();
}

TEST(Reshape, NoGradInputGivesNoGradView) {
  Graph& g = current_graph();
  g.clear();
  Tensor t = g.zeros(Shape{4, 5});
  Tensor v = reshape(t, Shape{20});
  EXPECT_FALSE(v.requires_grad());
  EXPECT_EQ(v.grad(), nullptr);
  EXPECT_EQ(t.grad(), nullptr);
  Rng rng(3);
  auto x = test::make_input("x", Shape{4, 5}, rng);
  {
    NoGradGuard ng;
    Tensor w = reshape(x->tensor(), Shape{20});
    EXPECT_FALSE(w.requires_grad());
  }
  g.clear();
}

TEST(Reshape, Gradients) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{2, 3, 4}, rng);
  auto w = test::make_input("w", Shape{6, 4}, rng);
  // The view alone, the view feeding an op, and a view of an intermediate.
  EXPECT_TRUE(test::grad_check([&] { return reshape(x->tensor(), Shape{4, 6}); }, {x.get()}));
  EXPECT_TRUE(test::grad_check(
      [&] {
        return mul(reshape(x->tensor(), Shape{6, 4}), w->tensor());
      },
      {x.get(), w.get()}));
  EXPECT_TRUE(test::grad_check(
      [&] {
        Tensor h = mul(x->tensor(), x->tensor());
        return add(reshape(h, Shape{6, 4}), w->tensor());
      },
      {x.get(), w.get()}));
  // The same input used directly and through a view: both contributions add up.
  EXPECT_TRUE(test::grad_check(
      [&] { return add(reshape(x->tensor(), Shape{24}), reshape(x->tensor(), Shape{24})); },
      {x.get()}));
}

TEST(Reshape, NumelMismatchThrows) {
  Rng rng(5);
  auto x = test::make_input("x", Shape{2, 3}, rng);
  expect_error([&] { reshape(x->tensor(), Shape{4, 2}); }, "[reshape]");
}

TEST(Transpose, MatchesNaiveForEveryPair) {
  Rng rng(6);
  const Shape s{2, 3, 4, 5};
  auto x = test::make_input("x", s, rng);
  for (int d0 = -4; d0 < 4; ++d0)
    for (int d1 = 0; d1 < 4; ++d1) {
      Tensor y = transpose(x->tensor(), d0, d1);
      const int a = d0 < 0 ? d0 + 4 : d0;
      Shape ys = s;
      std::swap(ys.dims[a], ys.dims[d1]);
      ASSERT_EQ(y.shape(), ys);
      for (int64_t i = 0; i < y.numel(); ++i) {
        int64_t idx[4];
        unflat(ys, i, idx);
        std::swap(idx[a], idx[d1]);
        ASSERT_EQ(y.data()[i], x->data()[flat(s, idx)]) << d0 << "," << d1 << " at " << i;
      }
      current_graph().clear();
    }
}

TEST(Transpose, Gradients) {
  Rng rng(7);
  auto x = test::make_input("x", Shape{2, 3, 4, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return transpose(x->tensor(), 1, 2); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return transpose(x->tensor(), -1, -2); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return transpose(x->tensor(), 0, 3); }, {x.get()}));
  auto m = test::make_input("m", Shape{3, 7}, rng);
  EXPECT_TRUE(test::grad_check([&] { return transpose(m->tensor(), 0, 1); }, {m.get()}));
}

// (B, T, H, Dh) -> (B, H, T, Dh), big enough to run in parallel; the
// backward of a transpose is the same transpose of the gradient.
TEST(Transpose, LargeForwardAndBackward) {
  Graph& g = current_graph();
  g.clear();
  Rng rng(8);
  const Shape s{4, 256, 8, 32};
  auto x = test::make_input("x", s, rng);
  Tensor y = transpose(x->tensor(), 1, 2);
  float* gy = g.grad(y);
  for (int64_t i = 0; i < y.numel(); ++i) gy[i] = float(i % 1000);
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t idx[4];
    unflat(y.shape(), i, idx);
    std::swap(idx[1], idx[2]);
    ASSERT_EQ(y.data()[i], x->data()[flat(s, idx)]);
  }
  x->zero_grad();
  g.run_tape();
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t idx[4];
    unflat(y.shape(), i, idx);
    std::swap(idx[1], idx[2]);
    ASSERT_EQ(x->grad()[flat(s, idx)], gy[i]);
  }
  g.clear();
}

TEST(Transpose, BadDimThrows) {
  Rng rng(9);
  auto x = test::make_input("x", Shape{2, 3}, rng);
  expect_error([&] { transpose(x->tensor(), 0, 2); }, "[transpose]");
  expect_error([&] { transpose(x->tensor(), -3, 0); }, "[transpose]");
}

TEST(Slice, MatchesNaiveOnEveryDim) {
  Rng rng(10);
  const Shape s{3, 4, 5};
  auto x = test::make_input("x", s, rng);
  for (int dim = 0; dim < 3; ++dim) {
    const int64_t start = 1, end = s.dims[dim] - 1;
    Tensor y = slice(x->tensor(), dim, start, end);
    Shape ys = s;
    ys.dims[dim] = end - start;
    ASSERT_EQ(y.shape(), ys);
    for (int64_t i = 0; i < y.numel(); ++i) {
      int64_t idx[3];
      unflat(ys, i, idx);
      idx[dim] += start;
      ASSERT_EQ(y.data()[i], x->data()[flat(s, idx)]);
    }
  }
  // Negative dim counts from the back.
  Tensor y = slice(x->tensor(), -1, 2, 4);
  EXPECT_EQ(y.shape(), (Shape{3, 4, 2}));
  EXPECT_EQ(y.data()[0], x->data()[2]);
  current_graph().clear();
}

TEST(Slice, Gradients) {
  Rng rng(11);
  auto x = test::make_input("x", Shape{3, 4, 5}, rng);
  EXPECT_TRUE(test::grad_check([&] { return slice(x->tensor(), 0, 1, 3); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return slice(x->tensor(), 1, 0, 2); }, {x.get()}));
  EXPECT_TRUE(test::grad_check([&] { return slice(x->tensor(), -1, 3, 5); }, {x.get()}));
  // Overlapping slices of one input accumulate.
  EXPECT_TRUE(test::grad_check(
      [&] { return add(slice(x->tensor(), 2, 0, 3), slice(x->tensor(), 2, 1, 4)); }, {x.get()}));
}

TEST(Slice, BadRangeThrows) {
  Rng rng(12);
  auto x = test::make_input("x", Shape{3, 4}, rng);
  expect_error([&] { slice(x->tensor(), 1, 2, 5); }, "[slice]");
  expect_error([&] { slice(x->tensor(), 1, 3, 2); }, "[slice]");
  expect_error([&] { slice(x->tensor(), 1, -1, 2); }, "[slice]");
  expect_error([&] { slice(x->tensor(), 2, 0, 1); }, "[slice]");
}

TEST(Concat, MatchesNaiveOnEveryDim) {
  Rng rng(13);
  for (int dim = 0; dim < 3; ++dim) {
    Shape sa{2, 3, 4}, sb{2, 3, 4}, sc{2, 3, 4};
    sb.dims[dim] = 1;
    sc.dims[dim] = 2;
    auto a = test::make_input("a", sa, rng);
    auto b = test::make_input("b", sb, rng);
    auto c = test::make_input("c", sc, rng);
    Tensor y = concat({a->tensor(), b->tensor(), c->tensor()}, dim);
    Shape ys = sa;
    ys.dims[dim] = sa.dims[dim] + 1 + 2;
    ASSERT_EQ(y.shape(), ys);
    for (int64_t i = 0; i < y.numel(); ++i) {
      int64_t idx[3];
      unflat(ys, i, idx);
      float ref;
      if (idx[dim] < sa.dims[dim]) {
        ref = a->data()[flat(sa, idx)];
      } else if (idx[dim] < sa.dims[dim] + 1) {
        idx[dim] -= sa.dims[dim];
        ref = b->data()[flat(sb, idx)];
      } else {
        idx[dim] -= sa.dims[dim] + 1;
        ref = c->data()[flat(sc, idx)];
      }
      ASSERT_EQ(y.data()[i], ref) << "dim " << dim << " at " << i;
    }
    current_graph().clear();
  }
}

TEST(Concat, Gradients) {
  Rng rng(14);
  auto a = test::make_input("a", Shape{2, 3, 4}, rng);
  auto b = test::make_input("b", Shape{2, 1, 4}, rng);
  auto c = test::make_input("c", Shape{2, 2, 4}, rng);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return concat({a->tensor(), b->tensor(), c->tensor()}, 1);
      },
      {a.get(), b.get(), c.get()}));
  auto d = test::make_input("d", Shape{2, 3, 2}, rng);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return concat({a->tensor(), d->tensor()}, -1);
      },
      {a.get(), d.get()}));
  // A frozen part gets no gradient; the same tensor twice gets both.
  d->set_trainable(false);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return concat({d->tensor(), a->tensor(), a->tensor()}, 2);
      },
      {a.get()}));
}

TEST(Concat, LargeRoundTripThroughSlices) {
  Graph& g = current_graph();
  g.clear();
  Rng rng(15);
  auto x = test::make_input("x", Shape{512, 3 * 256}, rng);
  // Split q, k, v the way a fused projection would, then put them back.
  Tensor q = slice(x->tensor(), 1, 0, 256), k = slice(x->tensor(), 1, 256, 512),
         v = slice(x->tensor(), 1, 512, 768);
  Tensor y = concat({q, k, v}, 1);
  ASSERT_EQ(y.shape(), x->shape());
  float* gy = g.grad(y);
  for (int64_t i = 0; i < y.numel(); ++i) {
    ASSERT_EQ(y.data()[i], x->data()[i]);
    gy[i] = float(i % 97);
  }
  x->zero_grad();
  g.run_tape();
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(x->grad()[i], gy[i]);
  g.clear();
}

TEST(Concat, BadArgumentsThrow) {
  Rng rng(16);
  auto a = test::make_input("a", Shape{2, 3}, rng);
  auto b = test::make_input("b", Shape{3, 3}, rng);
  auto c = test::make_input("c", Shape{2, 3, 1}, rng);
  expect_error([&] { concat({a->tensor(), b->tensor()}, 1); }, "[concat]");
  expect_error([&] { concat({a->tensor(), c->tensor()}, 0); }, "[concat]");
  expect_error([&] { concat({}, 0); }, "[concat]");
  expect_error([&] { concat({a->tensor()}, 2); }, "[concat]");
}

}  // namespace
}  // namespace bl
