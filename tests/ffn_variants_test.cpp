// FFN variants: relu2 (Primer / Nemotron), gated_relu2 and none. Forward
// against a naive loop over the weights, exact parameter counts, block
// gradient checks, cached decoding and a short training run.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "component_checks.h"
#include "core/block.h"
#include "core/config.h"
#include "core/ffn/none.h"
#include "core/model.h"
#include "gradcheck.h"
#include "tensor/graph.h"

namespace bl {
namespace {

using test::randomize;

BlockConfig ffn_block(const std::string& ffn, const std::string& position = "rope") {
  BlockConfig c;
  c.attention = "gqa";
  c.ffn = ffn;
  c.norm = "rms_norm";
  c.position = position;
  c.d_model = 8;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 12;
  c.max_seq_len = 64;
  return c;
}

const char* const kFfns[] = {"relu2", "gated_relu2", "none"};

TEST(FfnVariants, RegisteredAndValid) {
  for (const char* name : kFfns) {
    EXPECT_TRUE(ffn_registry().contains(name)) << name;
    EXPECT_FALSE(ffn_registry().entry(name).summary.empty()) << name;
    EXPECT_TRUE(validation_errors(ffn_block(name), "block").empty()) << name;
  }
  BlockConfig bad = ffn_block("relu3");
  auto errors = validation_errors(bad, "block");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("gated_relu2"), std::string::npos) << errors[0];  // lists known names
}

// y = x Wᵀ + b for one row.
std::vector<double> affine(const Parameter& w, const Parameter* b, const float* x) {
  const int64_t out = w.shape()[0], in = w.shape()[1];
  std::vector<double> y(size_t(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double s = b ? b->data()[o] : 0.0;
    for (int64_t i = 0; i < in; ++i) s += double(w.data()[o * in + i]) * x[i];
    y[size_t(o)] = s;
  }
  return y;
}

TEST(FfnVariants, ForwardMatchesNaive) {
  for (const char* name : {"relu2", "gated_relu2"}) {
    BlockConfig c = ffn_block(name);
    Block block(c);
    Rng rng(3);
    randomize(block, rng, 0.5f);
    FeedForward& ffn = *block.ffn();
    std::map<std::string, Parameter*> p;
    for (auto& [n, q] : ffn.named_parameters()) p[n] = q;
    auto x = test::make_input("x", Shape{2, 3, 8}, rng);
    NoGradGuard ng;
    Tensor y = ffn.forward(x->tensor());
    ASSERT_EQ(y.shape(), x->shape());
    int negatives = 0;
    for (int64_t r = 0; r < 6; ++r) {
      const float* xr = x->data() + r * 8;
      std::vector<double> up = affine(*p["up_proj.weight"], p["up_proj.bias"], xr);
      std::vector<double> gate = std::string(name) == "gated_relu2"
                                     ? affine(*p["gate_proj.weight"], p["gate_proj.bias"], xr)
                                     : up;
      std::vector<float> h(12);
      for (size_t j = 0; j < 12; ++j) {
        const double a = gate[j] > 0 ? gate[j] * gate[j] : 0.0;
        negatives += gate[j] < 0;
        h[j] = float(std::string(name) == "gated_relu2" ? a * up[j] : a);
      }
      std::vector<double> want = affine(*p["down_proj.weight"], p["down_proj.bias"], h.data());
      for (int64_t d = 0; d < 8; ++d)
        EXPECT_NEAR(y.data()[r * 8 + d], want[size_t(d)], 1e-4 * (1 + std::abs(want[size_t(d)])))
            << name << " row " << r;
    }
    EXPECT_GT(negatives, 0) << "the relu must have been exercised";
    current_graph().clear();
  }
}

TEST(FfnVariants, ParameterCountsByHand) {
  auto count = [](const std::string& name, bool bias) {
    BlockConfig c = ffn_block(name);
    c.bias = bias;
    Block b(c);
    return b.ffn() ? b.ffn()->num_parameters() : int64_t(0);
  };
  // d_model 8, d_ff 12.
  EXPECT_EQ(count("relu2", true), 2 * 8 * 12 + 12 + 8);
  EXPECT_EQ(count("relu2", false), 2 * 8 * 12);
  EXPECT_EQ(count("gated_relu2", true), 3 * 8 * 12 + 12 + 12 + 8);
  EXPECT_EQ(count("gated_relu2", false), 3 * 8 * 12);
  // ffn none: no FFN and no FFN norm, so the block is the attention sublayer alone.
  BlockConfig none = ffn_block("none");
  none.bias = false;
  Block b(none);
  EXPECT_EQ(b.ffn(), nullptr);
  const int64_t attn = 64 + 32 + 32 + 64;   // q, k, v, o without bias
  EXPECT_EQ(b.num_parameters(), attn + 8);  // + attention RMSNorm
  // Active parameters and FLOPs: every FFN weight is active.
  ModelConfig m;
  m.vocab_size = 13;
  m.n_layers = 1;
  m.block = ffn_block("gated_relu2");
  LanguageModel model(m);
  LayerStats s = model.layer_stats(16)[0];
  EXPECT_EQ(s.active_params, s.params);
  EXPECT_EQ(s.params, (64 + 8) + (32 + 4) + (32 + 4) + (64 + 8) + 8 + (3 * 96 + 32) + 8);
}

TEST(FfnVariants, NoneSkipsTheSublayer) {
  // Standalone, "none" contributes nothing.
  NoFFN none{BlockConfig{}};
  Rng rng(2);
  auto x = test::make_input("x", Shape{2, 3, 8}, rng);
  Tensor y = none.forward(x->tensor());
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y.data()[i], 0.0f);
  EXPECT_EQ(none.num_parameters(), 0);
  current_graph().clear();
  // In a post-norm block, y = norm1(x + attn(x)) with no second norm.
  BlockConfig c = ffn_block("none");
  c.pre_norm = false;
  Block b(c);
  for (auto& [name, p] : b.named_parameters())
    EXPECT_TRUE(name.rfind("attention", 0) == 0 || name.rfind("attn_norm", 0) == 0) << name;
}

struct GradCase {
  std::string ffn, norm;
  bool pre_norm, bias;
};

void PrintTo(const GradCase& c, std::ostream* os) {
  *os << c.ffn << "/" << c.norm;
}

class FfnGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(FfnGradient, BlockMatchesFiniteDifferences) {
  const GradCase& gc = GetParam();
  BlockConfig c = ffn_block(gc.ffn);
  c.norm = gc.norm;
  c.pre_norm = gc.pre_norm;
  c.bias = gc.bias;
  Block block(c);
  Rng rng(13);
  randomize(block, rng);
  auto x = test::make_input("x", Shape{2, 5, 8}, rng);
  std::vector<Parameter*> inputs{x.get()};
  for (Parameter* p : block.parameters()) inputs.push_back(p);
  Rng drop(0);
  // relu(.)^2 is only C1: where a perturbation of size h moves a pre-activation
  // across 0, central differences are off by O(h) (h = 1e-2 gave 6e-3 here).
  // h = 2e-3 shrinks that below atol while float32 rounding (~eps |L| / h) stays ~1e-4.
  test::GradCheckOptions opt;
  opt.h = 2e-3;
  EXPECT_TRUE(test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); },
                               inputs, opt));
}

INSTANTIATE_TEST_SUITE_P(Variants, FfnGradient,
                         ::testing::Values(GradCase{"relu2", "rms_norm", true, false},
                                           GradCase{"relu2", "layer_norm", false, true},
                                           GradCase{"gated_relu2", "rms_norm", true, true},
                                           GradCase{"gated_relu2", "layer_norm", false, false},
                                           GradCase{"none", "rms_norm", true, false},
                                           GradCase{"none", "layer_norm", false, true}),
                         [](const ::testing::TestParamInfo<GradCase>& info) {
                           const GradCase& c = info.param;
                           return c.ffn + "_" + c.norm + (c.pre_norm ? "_prenorm" : "_postnorm") +
                                  (c.bias ? "_bias" : "");
                         });

TEST(FfnVariants, CachedDecodingMatchesFullForward) {
  for (const char* name : kFfns)
    for (const char* pos : {"rope", "alibi", "learned"}) {
      ModelConfig m;
      m.vocab_size = 13;
      m.n_layers = 2;
      m.block = ffn_block(name, pos);
      LanguageModel model(m);
      Rng rng(5);
      randomize(model, rng, 0.2f);
      EXPECT_LT(test::cached_decoding_error(model, 11, std::vector<int64_t>(11, 1), 11), 1e-4)
          << name << "/" << pos;
      EXPECT_LT(test::cached_decoding_error(model, 11, {4, 1, 6}, 11), 1e-4) << name << "/" << pos;
    }
}

TEST(FfnVariants, SmallModelsTrain) {
  for (const char* name : kFfns) {
    ModelConfig m;
    m.vocab_size = 128;
    m.n_layers = 2;
    m.block = ffn_block(name);
    m.block.d_model = 16;
    m.block.d_ff = 32;
    auto [first, last] = test::train_on_repeated_text(m);
    RecordProperty(std::string(name) + "_loss",
                   std::to_string(first) + " -> " + std::to_string(last));
    EXPECT_LT(last, 0.7 * first) << name << ": " << first << " -> " << last;
  }
}

}  // namespace
}  // namespace bl
