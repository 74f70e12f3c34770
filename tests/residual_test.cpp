// Residual adds folded into a sublayer's last product: linear / gelu_linear
// with a residual, Attention::forward_add and FeedForward::forward_add.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "component_checks.h"
#include "core/components.h"
#include "core/config.h"
#include "core/position/none.h"
#include "gradcheck.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "tensor/gemm.h"

namespace bl {
namespace {

// Small enough for finite differences, valid for every registered component.
BlockConfig small_block(const std::string& attention, const std::string& ffn) {
  BlockConfig c;
  c.attention = attention;
  c.ffn = ffn;
  c.d_model = 8;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 12;
  c.max_seq_len = 16;
  c.window_size = 3;
  c.attention_chunk_size = 4;
  c.kv_lora_rank = 4;  // mla
  c.q_lora_rank = 4;
  c.n_experts = 4;  // the MoE family
  c.n_shared_experts = 1;
  c.moe_latent_size = 4;
  c.sparse_compress_ratio = 2;  // sparse_gqa
  c.sparse_select_k = 2;
  return c;
}

TEST(ResidualLinear, MatchesAddOfLinearAndGradients) {
  Rng rng(3);
  auto x = test::make_input("x", Shape{2, 5, 6}, rng);
  auto w = test::make_input("w", Shape{7, 6}, rng);
  auto b = test::make_input("b", Shape{7}, rng);
  auto r = test::make_input("r", Shape{2, 5, 7}, rng);
  for (bool own : {true, false}) {
    set_gemm_backend(own ? GemmBackend::automatic : GemmBackend::eigen);
    Graph& g = current_graph();
    g.clear();
    const Tensor fused = linear(x->tensor(), w->tensor(), b->tensor(), r->tensor());
    const Tensor ref = add(r->tensor(), linear(x->tensor(), w->tensor(), b->tensor()));
    for (int64_t i = 0; i < ref.numel(); ++i)
      EXPECT_NEAR(fused.data()[i], ref.data()[i], 1e-5f) << i;
    const Tensor gfused = gelu_linear(x->tensor(), w->tensor(), b->tensor(), r->tensor());
    const Tensor gref = add(r->tensor(), linear(gelu(x->tensor()), w->tensor(), b->tensor()));
    for (int64_t i = 0; i < gref.numel(); ++i)
      EXPECT_NEAR(gfused.data()[i], gref.data()[i], 1e-5f) << i;
    g.clear();
    std::vector<Parameter*> in{x.get(), w.get(), b.get(), r.get()};
    EXPECT_TRUE(test::grad_check(
        [&] { return linear(x->tensor(), w->tensor(), b->tensor(), r->tensor()); }, in));
    EXPECT_TRUE(test::grad_check(
        [&] { return gelu_linear(x->tensor(), w->tensor(), b->tensor(), r->tensor()); }, in));
    // The residual is also an input of the product, and an intermediate that
    // takes more gradient after the op (the residual stream's pattern).
    auto sq = std::make_unique<Parameter>("sq", Shape{7, 7});
    sq->init_normal(rng, 0.5f);
    EXPECT_TRUE(test::grad_check(
        [&] {
          const Tensor s = mul(x->tensor(), x->tensor());
          const Tensor h = linear(s, w->tensor(), b->tensor());
          const Tensor y = linear(h, sq->tensor(), Tensor(), h);
          return add(mul(h, h), y);
        },
        {x.get(), w.get(), b.get(), sq.get()}));
  }
  set_gemm_backend(GemmBackend::automatic);
  current_graph().clear();
}

TEST(ResidualLinear, ShapeMismatchNamesTheOp) {
  Rng rng(1);
  auto x = test::make_input("x", Shape{3, 4}, rng);
  auto w = test::make_input("w", Shape{5, 4}, rng);
  auto r = test::make_input("r", Shape{3, 4}, rng);
  try {
    linear(x->tensor(), w->tensor(), Tensor(), r->tensor());
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("residual"), std::string::npos) << e.what();
  }
  current_graph().clear();
}

// Every registered mixer and FFN: forward_add(x, r) is add(r, forward(x)),
// values and gradients (a subclass overriding forward() but inheriting a fused
// forward_add would fail here).
template <class Make, class Fwd, class FwdAdd>
void expect_same_as_add(const std::string& name, Make make, Fwd fwd, FwdAdd fwd_add) {
  auto m = make();
  Rng rng(5);
  test::randomize(*m, rng);
  auto x = test::make_input("x", Shape{2, 5, 8}, rng);
  auto r = test::make_input("r", Shape{2, 5, 8}, rng);
  Graph& g = current_graph();
  g.clear();
  std::vector<Parameter*> params = m->parameters();
  auto grads = [&](bool fused) {
    for (Parameter* p : params) p->zero_grad();
    x->zero_grad();
    r->zero_grad();
    const Tensor y =
        fused ? fwd_add(*m, x->tensor(), r->tensor()) : add(r->tensor(), fwd(*m, x->tensor()));
    std::vector<float> out(y.data(), y.data() + y.numel());
    float* gy = g.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) gy[i] = std::sin(float(i));
    g.run_tape();
    g.clear();
    for (Parameter* p : params)  // frozen ones (MoE routing biases) have no gradient
      if (p->grad()) out.insert(out.end(), p->grad(), p->grad() + p->numel());
    out.insert(out.end(), x->grad(), x->grad() + x->numel());
    out.insert(out.end(), r->grad(), r->grad() + r->numel());
    return out;
  };
  const std::vector<float> a = grads(true), b = grads(false);
  ASSERT_EQ(a.size(), b.size()) << name;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-4f * (1.0f + std::abs(b[i]))) << name << " element " << i;
}

TEST(ForwardAdd, EveryAttentionEqualsAddOfForward) {
  for (const std::string& name : attention_registry().names()) {
    const BlockConfig c = small_block(name, "standard");
    NoPosition pos;
    expect_same_as_add(
        name, [&] { return attention_registry().create(name, c); },
        [&](Attention& a, const Tensor& x) { return a.forward(x, pos, nullptr); },
        [&](Attention& a, const Tensor& x, const Tensor& r) {
          return a.forward_add(x, pos, nullptr, r);
        });
  }
}

TEST(ForwardAdd, EveryFeedForwardEqualsAddOfForward) {
  for (const std::string& name : ffn_registry().names()) {
    const BlockConfig c = small_block("gqa", name);
    expect_same_as_add(
        name, [&] { return ffn_registry().create(name, c); },
        [&](FeedForward& f, const Tensor& x) { return f.forward(x); },
        [&](FeedForward& f, const Tensor& x, const Tensor& r) { return f.forward_add(x, r); });
  }
}

}  // namespace
}  // namespace bl
