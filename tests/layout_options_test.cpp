// The block and model options that published layouts need (Hugging Face
// import): an explicit head_dim, q/k/v-only biases (Qwen2), the tanh GELU in
// the standard and gated FFNs (GPT-2's gelu_new, Gemma's GeGLU), RMSNorm with
// a (1 + weight) scale and a scaled token embedding (Gemma). Each: the
// function it must equal, block gradient checks, cached decoding against the
// full forward pass, and the validation that keeps it where it is meaningful.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "component_checks.h"
#include "core/block.h"
#include "core/config.h"
#include "core/model.h"
#include "gradcheck.h"
#include "ops/activation.h"
#include "tensor/graph.h"

namespace bl {
namespace {

using test::randomize;

BlockConfig small_block() {
  BlockConfig c;
  c.attention = "gqa";
  c.ffn = "gated";
  c.norm = "rms_norm";
  c.position = "rope";
  c.d_model = 8;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 12;
  c.max_seq_len = 64;
  c.bias = false;
  return c;
}

ModelConfig small_model(const BlockConfig& b) {
  ModelConfig m;
  m.vocab_size = 23;
  m.n_layers = 2;
  m.block = b;
  m.tie_embeddings = false;
  return m;
}

std::vector<float> logits(LanguageModel& model) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 2 * 9; ++i) ids.push_back(int32_t((i * 5 + 2) % model.config().vocab_size));
  Graph& g = current_graph();
  NoGradGuard ng;
  g.clear();
  Tensor y = model.forward(Tokens{ids.data(), Shape{2, 9}});
  std::vector<float> out(y.data(), y.data() + y.numel());
  g.clear();
  return out;
}

Parameter& param(Module& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return *p;
  throw std::runtime_error("no parameter " + name);
}

bool has_param(Module& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return true;
  return false;
}

// ---------------------------------------------------------------- functions

// (1 + w) RMSNorm is plain RMSNorm with weight 1 + w: bit for bit, since both
// round 1 + w to float once.
TEST(LayoutOptions, UnitOffsetNormIsRmsNormOfOnePlusWeight) {
  BlockConfig b = small_block();
  b.norm_unit_offset = true;
  LanguageModel offset(small_model(b));
  Rng rng(3);
  offset.init_weights(rng);
  for (auto& [n, p] : offset.named_parameters())
    if (n.find("norm") != std::string::npos) {
      EXPECT_EQ(p->init_kind(), Init::kZeros) << n;
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] = 0.3f * float(rng.normal());
    }
  b.norm_unit_offset = false;
  LanguageModel plain(small_model(b));
  test::copy_parameters(offset, plain);
  for (auto& [n, p] : plain.named_parameters())
    if (n.find("norm") != std::string::npos)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  EXPECT_EQ(logits(offset), logits(plain));
}

// A scaled embedding is the unscaled model with the table multiplied (untied,
// so the LM head does not see the scale).
TEST(LayoutOptions, EmbedScaleMultipliesTheTokenEmbeddings) {
  ModelConfig m = small_model(small_block());
  m.embed_scale = std::sqrt(8.0);
  LanguageModel scaled(m);
  Rng rng(4);
  scaled.init_weights(rng);
  randomize(scaled, rng);
  m.embed_scale = 1.0;
  LanguageModel plain(m);
  test::copy_parameters(scaled, plain);
  Parameter& e = param(plain, "embed_tokens.weight");
  for (int64_t i = 0; i < e.numel(); ++i) e.data()[i] *= float(std::sqrt(8.0));
  EXPECT_EQ(logits(scaled), logits(plain));
  // Tied, the head reads the unscaled table: the two differ.
  ModelConfig t = small_model(small_block());
  t.tie_embeddings = true;
  t.embed_scale = 2.0;
  LanguageModel tied(t);
  tied.init_weights(rng);
  t.embed_scale = 1.0;
  LanguageModel tied_plain(t);
  test::copy_parameters(tied, tied_plain);
  EXPECT_NE(logits(tied), logits(tied_plain));
}

// q/k/v biases alone equal every projection biased with zero o_proj and FFN biases.
TEST(LayoutOptions, QkvBiasBiasesOnlyTheInputProjections) {
  BlockConfig b = small_block();
  b.qkv_bias = true;
  LanguageModel qkv(small_model(b));
  Rng rng(5);
  randomize(qkv, rng);
  for (const char* n : {"q_proj", "k_proj", "v_proj"})
    EXPECT_TRUE(has_param(qkv, std::string("layers.0.attention.") + n + ".bias")) << n;
  EXPECT_FALSE(has_param(qkv, "layers.0.attention.o_proj.bias"));
  EXPECT_FALSE(has_param(qkv, "layers.0.ffn.up_proj.bias"));
  b.qkv_bias = false;
  b.bias = true;
  LanguageModel all(small_model(b));
  for (Parameter* p : all.parameters()) std::fill(p->data(), p->data() + p->numel(), 0.0f);
  test::copy_parameters(qkv, all);
  EXPECT_EQ(logits(qkv), logits(all));
}

// head_dim apart from d_model / n_heads: projection shapes, the cache width,
// and a model whose heads do not divide d_model.
TEST(LayoutOptions, ExplicitHeadDimSizesTheProjections) {
  BlockConfig b = small_block();
  b.d_model = 12;
  b.n_heads = 5;  // 12 / 5 is no integer: only an explicit head_dim makes this valid
  b.n_kv_heads = 1;
  EXPECT_FALSE(validation_errors(b).empty());
  b.head_dim_override = 6;
  EXPECT_TRUE(validation_errors(b).empty()) << validation_errors(b)[0];
  EXPECT_EQ(b.head_dim(), 6);
  LanguageModel model(small_model(b));
  EXPECT_EQ(param(model, "layers.0.attention.q_proj.weight").shape(), (Shape{30, 12}));
  EXPECT_EQ(param(model, "layers.0.attention.k_proj.weight").shape(), (Shape{6, 12}));
  EXPECT_EQ(param(model, "layers.0.attention.o_proj.weight").shape(), (Shape{12, 30}));
  b.head_dim_override = 7;  // RoPE rotates pairs
  ASSERT_FALSE(validation_errors(b).empty());
  EXPECT_NE(validation_errors(b)[0].find("head_dim"), std::string::npos);
}

// The tanh GELU FFNs are the op applied to the projections.
TEST(LayoutOptions, TanhGeluFfnsComputeTheTanhForm) {
  for (const char* ffn : {"standard", "gated"}) {
    SCOPED_TRACE(ffn);
    BlockConfig b = small_block();
    b.ffn = ffn;
    b.ffn_activation = "gelu_tanh";
    b.d_model = 4;
    b.d_ff = 3;
    Block block(b);
    Rng rng(6);
    randomize(block, rng, 0.8f);
    Rng xr(7);
    auto x = test::make_input("x", Shape{1, 1, 4}, xr, 1.0f);
    auto& f = *block.ffn();
    Graph& g = current_graph();
    g.clear();
    Tensor y = f.forward(x->tensor());
    auto row = [&](const std::string& n, int64_t o) {
      const Parameter& w = param(f, n);
      double s = 0;
      for (int64_t i = 0; i < 4; ++i) s += double(w.data()[o * 4 + i]) * x->data()[i];
      return s;
    };
    auto gelu_tanh_ref = [](double v) {
      return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    };
    std::vector<double> h(3);
    for (int64_t j = 0; j < 3; ++j)
      h[size_t(j)] = std::string(ffn) == "standard"
                         ? gelu_tanh_ref(row("up_proj.weight", j))
                         : gelu_tanh_ref(row("gate_proj.weight", j)) * row("up_proj.weight", j);
    const Parameter& down = param(f, "down_proj.weight");
    for (int64_t o = 0; o < 4; ++o) {
      double ref = 0;
      for (int64_t j = 0; j < 3; ++j) ref += double(down.data()[o * 3 + j]) * h[size_t(j)];
      EXPECT_NEAR(y.data()[o], ref, 1e-5 * (1 + std::abs(ref))) << o;
    }
    g.clear();
  }
}

// ---------------------------------------------------------------- gradients and decoding

struct Variant {
  const char* name;
  void (*apply)(BlockConfig&);
};

const Variant kVariants[] = {
    {"gelu_tanh_standard",
     [](BlockConfig& b) {
       b.ffn = "standard";
       b.ffn_activation = "gelu_tanh";
     }},
    {"geglu_tanh", [](BlockConfig& b) { b.ffn_activation = "gelu_tanh"; }},
    {"norm_unit_offset", [](BlockConfig& b) { b.norm_unit_offset = true; }},
    {"qkv_bias", [](BlockConfig& b) { b.qkv_bias = true; }},
    {"head_dim_6",
     [](BlockConfig& b) {
       b.head_dim_override = 6;
       b.n_heads = 3;
     }},
    {"gemma_like",
     [](BlockConfig& b) {
       b.ffn_activation = "gelu_tanh";
       b.norm_unit_offset = true;
       b.head_dim_override = 8;
     }},
};

TEST(LayoutOptions, BlockGradientsMatchFiniteDifferences) {
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.name);
    BlockConfig c = small_block();
    v.apply(c);
    ASSERT_TRUE(validation_errors(c).empty()) << validation_errors(c)[0];
    Block block(c);
    Rng rng(13);
    randomize(block, rng);
    for (auto& [n, p] : block.named_parameters())  // offset norms: weights around 0
      if (c.norm_unit_offset && n.find("norm") != std::string::npos)
        for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] = 0.3f * float(rng.normal());
    auto x = test::make_input("x", Shape{2, 5, 8}, rng);
    std::vector<Parameter*> inputs{x.get()};
    for (Parameter* p : block.parameters()) inputs.push_back(p);
    Rng drop(0);
    EXPECT_TRUE(
        test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); }, inputs));
  }
}

// The embedding scale's gradient reaches the table (scaled).
TEST(LayoutOptions, ScaledEmbeddingGradient) {
  ModelConfig m = small_model(small_block());
  m.embed_scale = 2.5;
  m.n_layers = 1;
  LanguageModel model(m);
  Rng rng(8);
  model.init_weights(rng);
  randomize(model, rng);
  std::vector<int32_t> ids = {1, 5, 7, 2, 9, 3}, tgt = {5, 7, 2, 9, 3, 1};
  EXPECT_TRUE(test::grad_check(
      [&] {
        return model.loss(Tokens{ids.data(), Shape{1, 6}}, Tokens{tgt.data(), Shape{1, 6}});
      },
      {&param(model, "embed_tokens.weight")}));
}

TEST(LayoutOptions, CachedDecodingMatchesFullForward) {
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.name);
    BlockConfig b = small_block();
    v.apply(b);
    ModelConfig m = small_model(b);
    m.embed_scale = std::sqrt(8.0);
    EXPECT_LT(test::decode_error(m, 11, test::one_at_a_time(11)), 1e-4);
    EXPECT_LT(test::decode_error(m, 11, {4, 1, 6}), 1e-4);
  }
}

TEST(LayoutOptions, SmallModelsTrain) {
  BlockConfig b = small_block();
  b.d_model = 16;
  b.n_heads = 2;
  kVariants[5].apply(b);  // everything Gemma uses at once
  b.qkv_bias = true;
  ModelConfig m = small_model(b);
  m.vocab_size = 128;
  m.embed_scale = 4.0;
  auto [first, last] = test::train_on_repeated_text(m);
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
}

// ---------------------------------------------------------------- validation

std::string first_error(const BlockConfig& b) {
  const auto e = validation_errors(b, "block");
  return e.empty() ? "(valid)" : e[0];
}

TEST(LayoutOptions, OptionsAreRefusedWhereTheyMeanNothing) {
  BlockConfig b = small_block();
  b.attention = "mamba2";
  b.head_dim_override = 4;
  EXPECT_NE(first_error(b).find("block.head_dim is only supported by the GQA-family"),
            std::string::npos)
      << first_error(b);
  b = small_block();
  b.attention = "gated_deltanet";
  b.qkv_bias = true;
  EXPECT_NE(first_error(b).find("block.qkv_bias"), std::string::npos) << first_error(b);
  b = small_block();
  b.ffn = "relu2";
  b.ffn_activation = "gelu_tanh";
  EXPECT_NE(first_error(b).find("block.ffn_activation 'gelu_tanh' is not supported by ffn 'relu2'"),
            std::string::npos)
      << first_error(b);
  b = small_block();
  b.ffn_activation = "gelu";  // the gated FFN's choices are silu and gelu_tanh
  EXPECT_NE(first_error(b).find("ffn_activation"), std::string::npos);
  b = small_block();
  b.norm = "layer_norm";
  b.norm_unit_offset = true;
  EXPECT_NE(first_error(b).find("block.norm_unit_offset"), std::string::npos);
  b = small_block();
  b.head_dim_override = 0;
  EXPECT_NE(first_error(b).find("block.head_dim (0) must be > 0"), std::string::npos)
      << first_error(b);
  ModelConfig m = small_model(small_block());
  m.embed_scale = -1;
  ASSERT_FALSE(validation_errors(m).empty());
  EXPECT_NE(validation_errors(m)[0].find("embed_scale"), std::string::npos);
}

// JSON: unset options are left out; set ones round-trip.
TEST(LayoutOptions, JsonRoundTrip) {
  ModelConfig m = small_model(small_block());
  nlohmann::json plain = model_config_to_json(m);
  EXPECT_FALSE(plain["block"].contains("head_dim"));
  EXPECT_FALSE(plain["block"].contains("ffn_activation"));
  EXPECT_FALSE(plain.contains("embed_scale"));
  kVariants[5].apply(m.block);
  m.block.qkv_bias = true;
  m.embed_scale = 3.0;
  nlohmann::json j = model_config_to_json(m);
  EXPECT_EQ(j["block"]["head_dim"], 8);
  EXPECT_EQ(j["block"]["ffn_activation"], "gelu_tanh");
  EXPECT_EQ(j["embed_scale"], 3.0);
  EXPECT_EQ(model_config_from_json(j), m);
  j["block"]["ffn_activation"] = 3;
  try {
    model_config_from_json(j);
    ADD_FAILURE() << "accepted a number";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("block.ffn_activation: expected string or null"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace bl
