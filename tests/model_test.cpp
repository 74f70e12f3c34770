// Components, blocks and whole models: gradient checks, parameter and FLOP
// accounting against the PyTorch reference, and KV-cache decoding equal to
// the full forward pass.
#include "core/model.h"

#include <gtest/gtest.h>

#include <cmath>

#include "component_checks.h"
#include "core/block.h"
#include "core/config.h"
#include "core/position/sinusoidal.h"
#include "core/presets.h"
#include "gradcheck.h"
#include "tensor/graph.h"

namespace bl {
namespace {

using test::randomize;

BlockConfig small_block(const std::string& attention, const std::string& ffn,
                        const std::string& norm, const std::string& position) {
  BlockConfig c;
  c.attention = attention;
  c.ffn = ffn;
  c.norm = norm;
  c.position = position;
  c.d_model = 8;
  c.n_heads = 2;
  c.n_kv_heads = attention == "mha" ? std::optional<int64_t>() : std::optional<int64_t>(1);
  c.d_ff = 12;
  c.max_seq_len = 16;
  return c;
}

struct BlockCase {
  std::string attention, ffn, norm, position;
  bool pre_norm, bias, qk_norm;
};
void PrintTo(const BlockCase& c, std::ostream* os) {
  *os << c.attention << "/" << c.ffn << "/" << c.norm << "/" << c.position;
}

class BlockGradient : public ::testing::TestWithParam<BlockCase> {};

TEST_P(BlockGradient, MatchesFiniteDifferences) {
  const BlockCase& bc = GetParam();
  BlockConfig c = small_block(bc.attention, bc.ffn, bc.norm, bc.position);
  c.pre_norm = bc.pre_norm;
  c.bias = bc.bias;
  c.qk_norm = bc.qk_norm;
  Block block(c);
  Rng rng(11);
  randomize(block, rng);
  auto x = test::make_input("x", Shape{2, 5, 8}, rng);
  std::vector<Parameter*> inputs{x.get()};
  for (Parameter* p : block.parameters()) inputs.push_back(p);
  Rng drop(0);
  EXPECT_TRUE(
      test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); }, inputs));
}

INSTANTIATE_TEST_SUITE_P(
    Components, BlockGradient,
    ::testing::Values(BlockCase{"mha", "standard", "layer_norm", "learned", true, true, false},
                      BlockCase{"gqa", "gated", "rms_norm", "rope", true, false, false},
                      BlockCase{"gqa", "gated", "rms_norm", "rope", true, false, true},
                      BlockCase{"mha", "standard", "layer_norm", "alibi", false, true, false},
                      BlockCase{"gqa", "standard", "rms_norm", "none", false, false, true},
                      BlockCase{"mha", "gated", "layer_norm", "sinusoidal", true, true, false}),
    [](const ::testing::TestParamInfo<BlockCase>& info) {  // readable CTest names
      const BlockCase& c = info.param;
      return c.attention + "_" + c.ffn + "_" + c.norm + "_" + c.position +
             (c.pre_norm ? "_prenorm" : "_postnorm") + (c.bias ? "_bias" : "") +
             (c.qk_norm ? "_qknorm" : "");
    });

ModelConfig tiny_model(const std::string& position, const std::string& attention = "gqa") {
  ModelConfig m;
  m.vocab_size = 11;
  m.n_layers = 2;
  m.block = small_block(attention, "gated", "rms_norm", position);
  return m;
}

TEST(Model, LossGradientMatchesFiniteDifferences) {
  for (const char* pos : {"learned", "rope"}) {
    ModelConfig cfg = tiny_model(pos);
    cfg.tie_embeddings = std::string(pos) == "learned";
    LanguageModel model(cfg);
    Rng rng(5);
    randomize(model, rng);
    std::vector<int32_t> ids{1, 4, 2, 9, 0, 3, 3, 7, 10, 5, 6, 2};
    std::vector<int32_t> tg{4, 2, 9, 0, 3, 1, 7, 10, 5, 6, 2, 8};
    Tokens x{ids.data(), Shape{2, 6}}, y{tg.data(), Shape{2, 6}};
    EXPECT_TRUE(test::grad_check([&] { return model.loss(x, y); }, model.parameters()))
        << "position " << pos;
  }
}

// Exact parameter counts and FLOPs of the reference configs (../shared/perf/README.md).
TEST(Model, ReferenceParameterCountsAndFlops) {
  struct Ref {
    const char* preset;
    int64_t params, matmul_params;
    double flops;
  };
  for (Ref r :
       {Ref{"gpt-tiny", 818048, 801664, 5.60e6}, Ref{"gpt-small", 4821248, 4755712, 33.25e6},
        Ref{"llama-small", 4150272, 4150272, 29.62e6}}) {
    Preset p = load_preset(r.preset);
    LanguageModel model(p.model);
    EXPECT_EQ(model.num_parameters(), r.params) << r.preset;
    EXPECT_EQ(model.matmul_parameters(), r.matmul_params) << r.preset;
    EXPECT_NEAR(model.flops_per_token(p.train.seq_len), r.flops, 0.005e6) << r.preset;
  }
}

// Logits from a prompt pass plus one-token steps equal the full forward pass.
void expect_cached_decoding_matches(const ModelConfig& cfg) {
  LanguageModel model(cfg);
  Rng rng(3);
  model.init_weights(rng);
  randomize(model, rng, 0.2f);
  EXPECT_LT(test::cached_decoding_error(model, 9, {4, 1, 1, 1, 1, 1}, 9), 1e-4)
      << "position " << cfg.block.position << " attention " << cfg.block.attention;
}

TEST(Model, CachedDecodingMatchesFullForward) {
  for (const char* pos : {"learned", "sinusoidal", "rope", "alibi", "none"}) {
    expect_cached_decoding_matches(tiny_model(pos));
    expect_cached_decoding_matches(tiny_model(pos, "mha"));
  }
  ModelConfig post = tiny_model("rope");
  post.block.pre_norm = false;
  post.block.qk_norm = true;
  expect_cached_decoding_matches(post);
}

TEST(Model, HeterogeneousBlockConfigs) {
  ModelConfig cfg = tiny_model("rope");
  cfg.n_layers = 3;
  BlockConfig b0 = cfg.block, b1 = cfg.block, b2 = cfg.block;
  b1.attention = "mha";
  b1.n_kv_heads.reset();
  b1.ffn = "standard";
  b2.position = "none";
  b2.d_ff = 20;
  cfg.block_configs = {b0, b1, b2};
  LanguageModel model(cfg);
  EXPECT_EQ(model.block(1).config().attention, "mha");
  auto stats = model.layer_stats(16);
  // Layer 2 has the wider FFN: 3 * 8 * 8 more weights and 2 * 8 more gate/up biases.
  EXPECT_EQ(stats[2].params - stats[0].params, 3 * 8 * (20 - 12) + 2 * (20 - 12));
  expect_cached_decoding_matches(cfg);
}

TEST(Model, UnknownComponentListsKnownNames) {
  ModelConfig cfg = tiny_model("rope");
  cfg.block.attention = "flash";
  try {
    LanguageModel model(cfg);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("flash"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gqa"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mha"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace bl

namespace bl {
namespace {

// The sinusoidal table, embedded into zeros, against its formulas written out here.
std::vector<float> sinusoidal_table(bool vaswani, int64_t d, int64_t T) {
  BlockConfig b;
  b.d_model = d;
  b.max_seq_len = T;
  b.sinusoidal_vaswani = vaswani;
  SinusoidalPosition pos(b);
  NoGradGuard ng;
  Tensor x = current_graph().zeros(Shape{1, T, d});
  Tensor y = pos.embed(x, 0);
  std::vector<float> out(y.data(), y.data() + y.numel());
  current_graph().clear();
  return out;
}

TEST(SinusoidalPosition, DefaultIsMlxFullTurnsScaledByRootTwoOverD) {
  const int64_t d = 8, T = 5, h = 4;
  const auto t = sinusoidal_table(false, d, T);
  for (int64_t p = 0; p < T; ++p) {
    double sq = 0;
    for (int64_t i = 0; i < h; ++i) {
      // MLX: sigmas = exp(one_zero * (log 1 - log 1e-4) + log 1e-4) * 2 pi, one_zero = 1 - i/(h-1)
      const double one_zero = 1.0 - double(i) / double(h - 1);
      const double sigma = std::exp(one_zero * (0.0 - std::log(1e-4)) + std::log(1e-4)) * 2 * M_PI;
      EXPECT_NEAR(t[size_t(p * d + i)], std::sqrt(2.0 / d) * std::sin(p * sigma), 1e-6);
      EXPECT_NEAR(t[size_t(p * d + h + i)], std::sqrt(2.0 / d) * std::cos(p * sigma), 1e-6);
    }
    for (int64_t j = 0; j < d; ++j) sq += double(t[size_t(p * d + j)]) * t[size_t(p * d + j)];
    EXPECT_NEAR(std::sqrt(sq / d), 1.0 / std::sqrt(double(d)), 1e-6);  // row RMS 1/sqrt(d)
  }
  const auto v = sinusoidal_table(true, d, T);
  EXPECT_NEAR(v[size_t(3 * d + 2)], std::sin(3 / std::pow(10000.0, 2.0 / d)), 1e-6);
  EXPECT_NEAR(v[size_t(3 * d + 3)], std::cos(3 / std::pow(10000.0, 2.0 / d)), 1e-6);
}

TEST(SinusoidalPosition, ModelJsonWithoutTheKeyFromOlderCheckpointsMeansVaswani) {
  ModelConfig m;
  nlohmann::json j = model_config_to_json(m);
  EXPECT_EQ(j["block"]["sinusoidal_vaswani"], false);  // every writer spells it out
  j["block"].erase("sinusoidal_vaswani");
  EXPECT_FALSE(model_config_from_json(j).block.sinusoidal_vaswani);  // a user's config: MLX
  upgrade_legacy_model_json(j);                                      // an older checkpoint's
  EXPECT_TRUE(model_config_from_json(j).block.sinusoidal_vaswani);
}

}  // namespace
}  // namespace bl
