// Pointwise activations and the fused SwiGLU gate.
#include "ops/activation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "ops/elementwise.h"

namespace bl {
namespace {

enum class Act { kGelu, kSilu, kRelu, kRelu2, kSigmoid, kGeluTanh };
const Act kActs[] = {Act::kGelu,  Act::kSilu,    Act::kRelu,
                     Act::kRelu2, Act::kSigmoid, Act::kGeluTanh};

const char* act_name(Act a) {
  switch (a) {
    case Act::kGelu:
      return "gelu";
    case Act::kSilu:
      return "silu";
    case Act::kRelu:
      return "relu";
    case Act::kRelu2:
      return "relu2";
    case Act::kSigmoid:
      return "sigmoid";
    case Act::kGeluTanh:
      return "gelu_tanh";
  }
  return "";
}

Tensor run(Act a, const Tensor& x) {
  switch (a) {
    case Act::kGelu:
      return gelu(x);
    case Act::kSilu:
      return silu(x);
    case Act::kRelu:
      return relu(x);
    case Act::kRelu2:
      return relu2(x);
    case Act::kSigmoid:
      return sigmoid(x);
    case Act::kGeluTanh:
      return gelu_tanh(x);
  }
  return Tensor();
}

// Double-precision references, written from the textbook definitions.
double ref_sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
// The tanh GELU 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3), written
// as x sigmoid(2u) (the same function) so the left tail keeps its digits
// in double instead of cancelling 1 + tanh u to 0.
const double kC = std::sqrt(2.0 / M_PI), kA = 0.044715;
double tanh_gelu_s(double x) {
  return ref_sigmoid(2.0 * kC * (x + kA * x * x * x));
}
double tanh_gelu_du(double x) {  // d(2u)/dx
  return 2.0 * kC * (1.0 + 3.0 * kA * x * x);
}
double ref_f(Act a, double x) {
  switch (a) {
    case Act::kGelu:
      // 0.5 x (1 + erf(x / sqrt 2)), via erfc so the left tail does not cancel to 0.
      return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    case Act::kSilu:
      return x * ref_sigmoid(x);
    case Act::kRelu:
      return x > 0 ? x : 0.0;
    case Act::kRelu2:
      return x > 0 ? x * x : 0.0;
    case Act::kSigmoid:
      return ref_sigmoid(x);
    case Act::kGeluTanh:
      return x * tanh_gelu_s(x);
  }
  return 0;
}
double ref_df(Act a, double x) {
  switch (a) {
    case Act::kGelu:
      return 0.5 * std::erfc(-x / std::sqrt(2.0)) +
             x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    case Act::kSilu:
      return ref_sigmoid(x) * (1.0 + x * (1.0 - ref_sigmoid(x)));
    case Act::kRelu:
      return x > 0 ? 1.0 : 0.0;
    case Act::kRelu2:
      return x > 0 ? 2.0 * x : 0.0;
    case Act::kSigmoid:
      return ref_sigmoid(x) * (1.0 - ref_sigmoid(x));
    case Act::kGeluTanh: {
      const double s = tanh_gelu_s(x);
      return s + x * s * (1.0 - s) * tanh_gelu_du(x);
    }
  }
  return 0;
}

// Sum of the magnitudes of the terms that make up ref_df: where they cancel
// (gelu' and silu' cross zero) float32 can only be accurate relative to them.
double ref_df_scale(Act a, double x) {
  const double s = ref_sigmoid(x);
  switch (a) {
    case Act::kGelu:
      return 0.5 * std::erfc(-x / std::sqrt(2.0)) +
             std::abs(x) * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    case Act::kSilu:
      return s + std::abs(x) * s * (1.0 - s);
    case Act::kGeluTanh: {
      const double t = tanh_gelu_s(x);
      return t + std::abs(x * t * (1.0 - t) * tanh_gelu_du(x));
    }
    default:
      return std::abs(ref_df(a, x));
  }
}

// Moves values at least `margin` away from 0, where relu/relu2 have a kink,
// so central differences with h = 1e-2 never straddle it.
void away_from_zero(Parameter& p, float margin) {
  for (int64_t i = 0; i < p.numel(); ++i) {
    float& v = p.data()[i];
    v = v >= 0 ? v + margin : v - margin;
  }
}

TEST(Activation, ForwardMatchesNaive) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{3, 4, 5}, rng, 3.0f);
  for (Act a : kActs) {
    Tensor y = run(a, x->tensor());
    ASSERT_EQ(y.shape(), x->shape());
    for (int64_t i = 0; i < x->numel(); ++i) {
      const double ref = ref_f(a, x->data()[i]);
      ASSERT_NEAR(y.data()[i], ref, 1e-6 * (1 + std::abs(ref))) << act_name(a) << " at " << i;
    }
  }
  current_graph().clear();
}

TEST(Activation, KnownValues) {
  Parameter x("x", Shape{3});
  x.data()[0] = -1.0f;
  x.data()[1] = 0.0f;
  x.data()[2] = 2.0f;
  Tensor g = gelu(x.tensor());
  EXPECT_NEAR(g.data()[0], -0.15865525, 1e-6);  // -Phi(-1)
  EXPECT_EQ(g.data()[1], 0.0f);
  EXPECT_NEAR(g.data()[2], 1.95449974, 1e-6);  // 2 Phi(2)
  Tensor r2 = relu2(x.tensor());
  EXPECT_EQ(r2.data()[0], 0.0f);
  EXPECT_EQ(r2.data()[2], 4.0f);
  Tensor s = sigmoid(x.tensor());
  EXPECT_EQ(s.data()[1], 0.5f);
  current_graph().clear();
}

// The vectorised erf/exp behind the activations, on a dense grid across the
// whole useful range (and into the tails), against double-precision libm.
TEST(Activation, DenseGridAccuracy) {
  const int64_t n = 40001;
  Parameter x("x", Shape{n});
  for (int64_t i = 0; i < n; ++i) x.data()[i] = -20.0f + 40.0f * float(i) / float(n - 1);
  Graph& g = current_graph();
  for (Act a : {Act::kGelu, Act::kSilu, Act::kSigmoid, Act::kGeluTanh}) {
    g.clear();
    x.zero_grad();
    Tensor y = run(a, x.tensor());
    float* gy = g.grad(y);
    for (int64_t i = 0; i < n; ++i) gy[i] = 1.0f;
    g.run_tape();
    double worst_f = 0, worst_df = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double xv = x.data()[i], f = ref_f(a, xv), df = ref_df(a, xv);
      worst_f = std::max(worst_f, std::abs(y.data()[i] - f) / (1e-30 + std::abs(f)));
      worst_df = std::max(worst_df, std::abs(x.grad()[i] - df) / (1e-30 + ref_df_scale(a, xv)));
      // Relative accuracy where values are representable; absolute near 0.
      // gelu_tanh's left tail, x e^(-0.07 |x|^3), leaves float's range near
      // x = -10 and is flushed to 0 there: its absolute floor is larger.
      // Its sigmoid's argument 2u = 1.6 (x + 0.044715 x^3) reaches -90 there,
      // and the four float roundings that form 2u (each <= 2^-24 |2u|) are a
      // relative error of e^(2u): up to 2e-5 at x = -9.
      const double floor = a == Act::kGeluTanh ? 1e-34 : 1e-37;
      const double cond = a == Act::kGeluTanh
                              ? 4.0 * std::ldexp(std::abs(2 * kC * (xv + kA * xv * xv * xv)), -24)
                              : 0.0;
      ASSERT_NEAR(y.data()[i], f, (1e-6 + cond) * std::abs(f) + floor)
          << act_name(a) << " x = " << xv;
      ASSERT_NEAR(x.grad()[i], df,
                  (2e-6 + cond) * std::abs(df) + 2e-7 * ref_df_scale(a, xv) + floor)
          << act_name(a) << " x = " << xv;
    }
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.2e / %.2e", worst_f, worst_df);
    RecordProperty(std::string(act_name(a)) + "_max_rel_err_value_grad", buf);
  }
  g.clear();
}

TEST(Activation, NanPropagates) {
  Parameter x("x", Shape{1});
  x.data()[0] = std::nanf("");
  for (Act a : kActs) EXPECT_TRUE(std::isnan(run(a, x.tensor()).item())) << act_name(a);
  EXPECT_TRUE(std::isnan(swiglu(x.tensor(), x.tensor()).item()));
  current_graph().clear();
}

TEST(Activation, ExtremeInputsStayFinite) {
  Parameter x("x", Shape{4});
  const float v[4] = {-200.0f, -90.0f, 90.0f, 200.0f};
  for (int i = 0; i < 4; ++i) x.data()[i] = v[i];
  Graph& g = current_graph();
  g.clear();
  for (Act a : kActs) {
    x.zero_grad();
    Tensor y = run(a, x.tensor());
    float* gy = g.grad(y);
    for (int i = 0; i < 4; ++i) gy[i] = 1.0f;
    g.run_tape();
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(std::isfinite(y.data()[i])) << act_name(a) << " " << v[i];
      EXPECT_TRUE(std::isfinite(x.grad()[i])) << act_name(a) << " " << v[i];
    }
    g.clear();
  }
}

TEST(Activation, Gradients) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{4, 6}, rng, 2.0f);
  away_from_zero(*x, 0.05f);
  for (Act a : kActs)
    EXPECT_TRUE(test::grad_check([&] { return run(a, x->tensor()); }, {x.get()})) << act_name(a);
}

TEST(Activation, SwigluMatchesSiluTimesUp) {
  Rng rng(3);
  auto gate = test::make_input("gate", Shape{2, 3, 8}, rng, 2.0f);
  auto up = test::make_input("up", Shape{2, 3, 8}, rng);
  Tensor y = swiglu(gate->tensor(), up->tensor());
  ASSERT_EQ(y.shape(), gate->shape());
  for (int64_t i = 0; i < y.numel(); ++i) {
    const double ref = ref_f(Act::kSilu, gate->data()[i]) * up->data()[i];
    ASSERT_NEAR(y.data()[i], ref, 1e-6 * (1 + std::abs(ref))) << i;
  }
  current_graph().clear();
}

TEST(Activation, SwigluGradients) {
  Rng rng(4);
  auto gate = test::make_input("gate", Shape{3, 10}, rng, 2.0f);
  auto up = test::make_input("up", Shape{3, 10}, rng);
  EXPECT_TRUE(test::grad_check([&] { return swiglu(gate->tensor(), up->tensor()); },
                               {gate.get(), up.get()}));
  // The fused op agrees with its unfused composition, gradient included.
  EXPECT_TRUE(test::grad_check([&] { return mul(silu(gate->tensor()), up->tensor()); },
                               {gate.get(), up.get()}));
  up->set_trainable(false);
  EXPECT_TRUE(test::grad_check([&] { return swiglu(gate->tensor(), up->tensor()); }, {gate.get()}));
  up->set_trainable(true);
  gate->set_trainable(false);
  EXPECT_TRUE(test::grad_check([&] { return swiglu(gate->tensor(), up->tensor()); }, {up.get()}));
}

TEST(Activation, SwigluShapeMismatchThrows) {
  Rng rng(5);
  auto gate = test::make_input("gate", Shape{2, 8}, rng);
  auto up = test::make_input("up", Shape{2, 4}, rng);
  try {
    swiglu(gate->tensor(), up->tensor());
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[swiglu]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 4)"), std::string::npos) << msg;
  }
  current_graph().clear();
}

TEST(Activation, Relu2GluMatchesReference) {
  Rng rng(7);
  auto gate = test::make_input("gate", Shape{2, 3, 8}, rng, 2.0f);
  auto up = test::make_input("up", Shape{2, 3, 8}, rng);
  Tensor y = relu2_glu(gate->tensor(), up->tensor());
  ASSERT_EQ(y.shape(), gate->shape());
  for (int64_t i = 0; i < y.numel(); ++i) {
    const double ref = ref_f(Act::kRelu2, gate->data()[i]) * up->data()[i];
    ASSERT_NEAR(y.data()[i], ref, 1e-6 * (1 + std::abs(ref))) << i;
  }
  EXPECT_THROW(relu2_glu(gate->tensor(), test::make_input("u", Shape{2, 3}, rng)->tensor()),
               std::invalid_argument);
  current_graph().clear();
}

TEST(Activation, Relu2GluGradients) {
  Rng rng(8);
  auto gate = test::make_input("gate", Shape{3, 10}, rng, 2.0f);
  auto up = test::make_input("up", Shape{3, 10}, rng);
  away_from_zero(*gate, 0.05f);
  EXPECT_TRUE(test::grad_check([&] { return relu2_glu(gate->tensor(), up->tensor()); },
                               {gate.get(), up.get()}));
  // Same input as gate and up: relu(x)^2 * x, both gradients in one buffer.
  EXPECT_TRUE(
      test::grad_check([&] { return relu2_glu(gate->tensor(), gate->tensor()); }, {gate.get()}));
  up->set_trainable(false);
  EXPECT_TRUE(
      test::grad_check([&] { return relu2_glu(gate->tensor(), up->tensor()); }, {gate.get()}));
  up->set_trainable(true);
  gate->set_trainable(false);
  EXPECT_TRUE(
      test::grad_check([&] { return relu2_glu(gate->tensor(), up->tensor()); }, {up.get()}));
}

// Several parallel chunks: forward and backward against the references.
TEST(Activation, LargeForwardAndBackward) {
  Rng rng(6);
  auto x = test::make_input("x", Shape{64, 2048}, rng, 3.0f);
  auto up = test::make_input("up", Shape{64, 2048}, rng);
  Graph& g = current_graph();
  const int n_acts = int(std::size(kActs));
  for (int k = 0; k <= n_acts; ++k) {
    g.clear();
    x->zero_grad();
    up->zero_grad();
    const bool is_swiglu = k == n_acts;
    const Act a = is_swiglu ? Act::kSilu : kActs[k];
    Tensor y = is_swiglu ? swiglu(x->tensor(), up->tensor()) : run(a, x->tensor());
    float* gy = g.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) gy[i] = float(rng.normal());
    g.run_tape();
    for (int64_t i = 0; i < y.numel(); ++i) {
      const double xv = x->data()[i], u = is_swiglu ? up->data()[i] : 1.0;
      const double ref = ref_f(a, xv) * u, dref = gy[i] * ref_df(a, xv) * u;
      ASSERT_NEAR(y.data()[i], ref, 1e-5 * (1 + std::abs(ref))) << k << " at " << i;
      ASSERT_NEAR(x->grad()[i], dref, 1e-5 * (1 + std::abs(dref))) << k << " at " << i;
      if (is_swiglu) {
        const double duref = gy[i] * ref_f(Act::kSilu, xv);
        ASSERT_NEAR(up->grad()[i], duref, 1e-5 * (1 + std::abs(duref))) << i;
      }
    }
  }
  g.clear();
}

TEST(Activation, GeluTanhKnownValuesAndTheGeglu) {
  Parameter x("x", Shape{3});
  x.data()[0] = -1.0f;
  x.data()[1] = 0.0f;
  x.data()[2] = 2.0f;
  // torch.nn.functional.gelu(x, approximate="tanh") at -1, 0, 2.
  Tensor g = gelu_tanh(x.tensor());
  EXPECT_NEAR(g.data()[0], -0.15880801, 1e-6);
  EXPECT_EQ(g.data()[1], 0.0f);
  EXPECT_NEAR(g.data()[2], 1.95459769, 1e-6);
  current_graph().clear();
  Rng rng(9);
  auto gate = test::make_input("gate", Shape{3, 7}, rng, 2.0f);
  auto up = test::make_input("up", Shape{3, 7}, rng);
  Tensor y = geglu_tanh(gate->tensor(), up->tensor());
  for (int64_t i = 0; i < y.numel(); ++i) {
    const double ref = ref_f(Act::kGeluTanh, gate->data()[i]) * up->data()[i];
    ASSERT_NEAR(y.data()[i], ref, 1e-6 * (1 + std::abs(ref))) << i;
  }
  current_graph().clear();
  EXPECT_TRUE(test::grad_check([&] { return geglu_tanh(gate->tensor(), up->tensor()); },
                               {gate.get(), up.get()}));
  EXPECT_TRUE(
      test::grad_check([&] { return geglu_tanh(gate->tensor(), gate->tensor()); }, {gate.get()}));
}

}  // namespace
}  // namespace bl
