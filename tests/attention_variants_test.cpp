// Attention variants: none, sliding_window_gqa, chunked_gqa, gated_gqa.
// Registry and validation, which positions each variant lets a token see,
// gradient checks of blocks, cached decoding (one token at a time and in
// irregular chunks, far past the window) against the full forward pass,
// bounded caches, exact parameter and FLOP counts, and a short training run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "component_checks.h"
#include "core/attention/chunked_gqa.h"
#include "core/attention/local_gqa.h"
#include "core/attention/sliding_window_gqa.h"
#include "core/block.h"
#include "core/config.h"
#include "core/model.h"
#include "gradcheck.h"
#include "tensor/graph.h"

namespace bl {
namespace {

using test::randomize;

constexpr int64_t kWindow = 3, kChunk = 4;

// d_model 8, 2 query heads of dim 4, 1 K/V head (GQA proper).
BlockConfig variant_block(const std::string& attention, const std::string& position = "rope",
                          const std::string& ffn = "gated") {
  BlockConfig c;
  c.attention = attention;
  c.ffn = ffn;
  c.norm = "rms_norm";
  c.position = position;
  c.d_model = 8;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 12;
  c.max_seq_len = 64;
  if (attention == "sliding_window_gqa") c.window_size = kWindow;
  if (attention == "chunked_gqa") c.attention_chunk_size = kChunk;
  return c;
}

ModelConfig variant_model(const BlockConfig& b, int64_t n_layers = 2) {
  ModelConfig m;
  m.vocab_size = 13;
  m.n_layers = n_layers;
  m.block = b;
  return m;
}

const char* const kVariants[] = {"none", "sliding_window_gqa", "chunked_gqa", "gated_gqa"};

// ------------------------------------------------------------ registry, validation

TEST(AttentionVariants, RegisteredWithTheirFields) {
  const auto& r = attention_registry();
  for (const char* name : kVariants) EXPECT_TRUE(r.contains(name)) << name;
  EXPECT_TRUE(r.uses_field("sliding_window_gqa", "window_size"));
  EXPECT_TRUE(r.uses_field("sliding_window_gqa", "n_kv_heads"));
  EXPECT_FALSE(r.uses_field("sliding_window_gqa", "attention_chunk_size"));
  EXPECT_TRUE(r.uses_field("chunked_gqa", "attention_chunk_size"));
  EXPECT_TRUE(r.uses_field("chunked_gqa", "n_kv_heads"));
  EXPECT_FALSE(r.uses_field("chunked_gqa", "window_size"));
  EXPECT_TRUE(r.uses_field("gated_gqa", "n_kv_heads"));
  EXPECT_TRUE(r.uses_field("gated_gqa", "qk_norm"));
  EXPECT_TRUE(r.entry("none").fields.empty());
  for (const char* name : kVariants) EXPECT_FALSE(r.entry(name).summary.empty()) << name;
}

bool has_error(const BlockConfig& b, const std::string& text) {
  for (const std::string& e : validation_errors(b, "block"))
    if (e.find(text) != std::string::npos) return true;
  return false;
}

TEST(AttentionVariants, Validation) {
  for (const char* name : kVariants)
    EXPECT_TRUE(validation_errors(variant_block(name), "block").empty()) << name;

  BlockConfig s = variant_block("sliding_window_gqa");
  s.window_size.reset();
  EXPECT_TRUE(has_error(s, "block.window_size must be set for attention 'sliding_window_gqa'"));
  s.window_size = 0;
  EXPECT_TRUE(has_error(s, "block.window_size (0) must be >= 1"));

  BlockConfig c = variant_block("chunked_gqa");
  c.attention_chunk_size.reset();
  EXPECT_TRUE(has_error(c, "block.attention_chunk_size must be set for attention 'chunked_gqa'"));
  c.attention_chunk_size = -2;
  EXPECT_TRUE(has_error(c, "block.attention_chunk_size (-2) must be >= 1"));

  // K/V heads follow the GQA rules.
  for (const char* name : {"sliding_window_gqa", "chunked_gqa", "gated_gqa"}) {
    BlockConfig b = variant_block(name);
    b.n_heads = 4;
    b.n_kv_heads = 3;
    EXPECT_TRUE(has_error(b, "block.n_heads (4) must be divisible by block.n_kv_heads (3)"))
        << name;
    b.n_kv_heads = 0;
    EXPECT_TRUE(has_error(b, "block.n_kv_heads (0) must be > 0")) << name;
  }
  // A model refuses to build from an invalid block.
  EXPECT_THROW(LanguageModel m(variant_model(s)), ConfigError);
  // Building a component directly without its field is refused too.
  EXPECT_THROW(Block b(s), std::invalid_argument);
}

// ------------------------------------------------------------ what each token sees

// Whether output row i of a block depends on input row j, found by perturbing
// row j (the FFN is per position, so this is the attention's mask).
bool depends(Block& block, int64_t T, int64_t i, int64_t j) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{1, T, 8}, rng);
  Rng drop(0);
  NoGradGuard ng;
  Graph& g = current_graph();
  g.clear();
  Tensor a = block.forward(x->tensor(), nullptr, false, drop);
  std::vector<float> base(a.data(), a.data() + a.numel());
  for (int64_t d = 0; d < 8; ++d) x->data()[j * 8 + d] += 0.5f;
  Tensor b = block.forward(x->tensor(), nullptr, false, drop);
  double diff = 0;
  for (int64_t d = 0; d < 8; ++d)
    diff = std::max(diff, double(std::abs(b.data()[i * 8 + d] - base[size_t(i * 8 + d)])));
  g.clear();
  return diff > 1e-6;
}

TEST(AttentionVariants, EachTokenSeesExactlyItsSpan) {
  const int64_t T = 10;
  for (const char* name : kVariants) {
    for (const char* pos : {"rope", "alibi", "none"}) {
      Block block(variant_block(name, pos));
      Rng rng(2);
      randomize(block, rng);
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) {
          bool expect = j == i;
          if (std::string(name) == "sliding_window_gqa") expect = j <= i && i - j < kWindow;
          if (std::string(name) == "chunked_gqa") expect = j <= i && j / kChunk == i / kChunk;
          if (std::string(name) == "gated_gqa") expect = j <= i;
          EXPECT_EQ(depends(block, T, i, j), expect)
              << name << "/" << pos << " row " << i << " on row " << j;
        }
    }
  }
}

// Block output for x (B, T, 8) with fixed random input.
std::vector<float> block_output(Block& block, int64_t T) {
  Rng rng(9);
  auto x = test::make_input("x", Shape{2, T, 8}, rng);
  Rng drop(0);
  NoGradGuard ng;
  current_graph().clear();
  Tensor y = block.forward(x->tensor(), nullptr, false, drop);
  std::vector<float> out(y.data(), y.data() + y.numel());
  current_graph().clear();
  return out;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::abs(a[i] - b[i])));
  return d;
}

TEST(AttentionVariants, LocalSpansCoveringTheSequenceEqualGQA) {
  const int64_t T = 7;
  Block ref(variant_block("gqa", "alibi"));
  Rng rng(3);
  randomize(ref, rng);
  const std::vector<float> want = block_output(ref, T);
  BlockConfig s = variant_block("sliding_window_gqa", "alibi");
  s.window_size = T;
  BlockConfig c = variant_block("chunked_gqa", "alibi");
  c.attention_chunk_size = T;
  for (const BlockConfig& cfg : {s, c}) {
    Block b(cfg);
    test::copy_parameters(ref, b);
    EXPECT_LT(max_diff(block_output(b, T), want), 1e-6) << cfg.attention;
  }
}

TEST(AttentionVariants, GatedGQAGatesTheOutputBeforeOProj) {
  const int64_t T = 6;
  Block gated(variant_block("gated_gqa"));
  Rng rng(5);
  randomize(gated, rng);
  Block ref(variant_block("gqa"));
  test::copy_parameters(gated, ref);
  Parameter *gw = nullptr, *gb = nullptr, *ow = nullptr;
  for (auto& [name, p] : gated.named_parameters()) {
    if (name == "attention.gate_proj.weight") gw = p;
    if (name == "attention.gate_proj.bias") gb = p;
  }
  for (auto& [name, p] : ref.named_parameters())
    if (name == "attention.o_proj.weight") ow = p;
  ASSERT_TRUE(gw && gb && ow);
  EXPECT_EQ(gw->shape(), (Shape{8, 8}));  // (n_heads * head_dim, d_model)
  // A gate of sigmoid(0) = 1/2 everywhere halves what reaches o_proj.
  gw->fill(0.0f);
  gb->fill(0.0f);
  for (int64_t i = 0; i < ow->numel(); ++i) ow->data()[i] *= 0.5f;
  EXPECT_LT(max_diff(block_output(gated, T), block_output(ref, T)), 1e-5);
  // A gate of sigmoid(30) ~ 1 passes it unchanged.
  gb->fill(30.0f);
  for (int64_t i = 0; i < ow->numel(); ++i) ow->data()[i] *= 2.0f;
  EXPECT_LT(max_diff(block_output(gated, T), block_output(ref, T)), 1e-5);
  // The gate depends on the token: random gate weights change the output.
  randomize(gated, rng);
  test::copy_parameters(gated, ref);
  EXPECT_GT(max_diff(block_output(gated, T), block_output(ref, T)), 1e-3);
}

TEST(AttentionVariants, NoneHasNoSublayer) {
  // attention none + ffn none: the block is the identity and has no parameters.
  BlockConfig both = variant_block("none", "rope", "none");
  for (bool pre : {true, false}) {
    both.pre_norm = pre;
    Block b(both);
    EXPECT_EQ(b.num_parameters(), 0);
    Rng rng(9);
    auto x = test::make_input("x", Shape{2, 5, 8}, rng);
    EXPECT_EQ(max_diff(block_output(b, 5), std::vector<float>(x->data(), x->data() + x->numel())),
              0.0);
  }
  // attention none + FFN: exactly the FFN sublayer, x + ffn(norm(x)), with no attention norm.
  Block b(variant_block("none"));
  for (auto& [name, p] : b.named_parameters())
    EXPECT_TRUE(name.rfind("ffn", 0) == 0) << name;  // ffn.* and ffn_norm.* only
  // The state only counts positions, and the model's decoding keeps working.
  auto st = b.attention().make_state(2, 16);
  EXPECT_EQ(st->length, 0);
  Rng rng(1), drop(0);
  auto x = test::make_input("x", Shape{2, 3, 8}, rng);
  {
    NoGradGuard ng;
    b.forward(x->tensor(), st.get(), false, drop);
  }
  EXPECT_EQ(st->length, 3);
  EXPECT_EQ(b.attention().mixing_flops_per_token(1000), 0.0);
  current_graph().clear();
}

// ------------------------------------------------------------ gradients

struct GradCase {
  std::string attention, position;
  bool pre_norm, qk_norm;
};

class VariantGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(VariantGradient, BlockMatchesFiniteDifferences) {
  const GradCase& gc = GetParam();
  BlockConfig c = variant_block(gc.attention, gc.position);
  c.pre_norm = gc.pre_norm;
  c.qk_norm = gc.qk_norm;
  Block block(c);
  Rng rng(11);
  randomize(block, rng);
  // 7 positions: more than the window and two chunks (one partial).
  auto x = test::make_input("x", Shape{2, 7, 8}, rng);
  std::vector<Parameter*> inputs{x.get()};
  for (Parameter* p : block.parameters()) inputs.push_back(p);
  Rng drop(0);
  EXPECT_TRUE(
      test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); }, inputs));
}

INSTANTIATE_TEST_SUITE_P(Variants, VariantGradient,
                         ::testing::Values(GradCase{"none", "rope", true, false},
                                           GradCase{"none", "none", false, false},
                                           GradCase{"sliding_window_gqa", "rope", true, false},
                                           GradCase{"sliding_window_gqa", "alibi", false, false},
                                           GradCase{"sliding_window_gqa", "none", true, true},
                                           GradCase{"chunked_gqa", "rope", true, false},
                                           GradCase{"chunked_gqa", "alibi", false, true},
                                           GradCase{"gated_gqa", "rope", true, false},
                                           GradCase{"gated_gqa", "alibi", false, false},
                                           GradCase{"gated_gqa", "none", true, true}),
                         [](const ::testing::TestParamInfo<GradCase>& info) {
                           const GradCase& c = info.param;
                           return c.attention + "_" + c.position +
                                  (c.pre_norm ? "_prenorm" : "_postnorm") +
                                  (c.qk_norm ? "_qknorm" : "");
                         });

// ------------------------------------------------------------ cached decoding

// One token at a time, irregular chunks (crossing window and chunk borders,
// some longer than the window or a chunk), and a long prompt then single steps.
const std::vector<std::vector<int64_t>> kSchedules = {
    std::vector<int64_t>(23, 1), {5, 1, 3, 7, 4, 3}, {2, 2, 2, 9, 1, 1, 6}, {17, 1, 1, 1, 1, 1, 1}};

TEST(AttentionVariants, CachedDecodingMatchesFullForward) {
  const int64_t T = 23;
  for (const char* name : kVariants)
    for (const char* pos : {"rope", "alibi", "learned", "none"})
      for (bool pre : {true, false}) {
        BlockConfig b = variant_block(name, pos);
        b.pre_norm = pre;
        b.qk_norm = !pre;
        LanguageModel model(variant_model(b));
        Rng rng(3);
        model.init_weights(rng);
        randomize(model, rng, 0.2f);
        for (const auto& pieces : kSchedules) {
          double err = test::cached_decoding_error(model, T, pieces, T);
          EXPECT_LT(err, 1e-4) << name << "/" << pos << (pre ? " pre" : " post") << " pieces "
                               << pieces.size();
        }
      }
}

// A hybrid stack, attention-free layer first (the model reads the position
// from layer 0's state), local layers with different spans, a gated layer
// without FFN and a global GQA layer.
TEST(AttentionVariants, HybridStackCachedDecodingMatchesFullForward) {
  ModelConfig cfg = variant_model(variant_block("gqa"), 5);
  BlockConfig none = variant_block("none"), sw = variant_block("sliding_window_gqa"),
              ch = variant_block("chunked_gqa"), ga = variant_block("gated_gqa", "rope", "none"),
              gq = variant_block("gqa", "none");
  sw.window_size = 5;
  ch.attention_chunk_size = 3;
  cfg.block_configs = {none, sw, ch, ga, gq};
  LanguageModel model(cfg);
  Rng rng(8);
  randomize(model, rng, 0.2f);
  for (const auto& pieces : kSchedules)
    EXPECT_LT(test::cached_decoding_error(model, 23, pieces, 23), 1e-4) << pieces.size();
}

TEST(AttentionVariants, LocalCachesHoldOnlyTheirSpan) {
  for (const char* name : {"sliding_window_gqa", "chunked_gqa"}) {
    LanguageModel model(variant_model(variant_block(name)));
    // State for a long max_len: the cache size does not depend on it.
    for (int64_t max_len : {8, 4096}) {
      DecodeState st = model.make_decode_state(3, max_len);
      auto* c = dynamic_cast<LocalKVCacheState*>(st[0].get());
      ASSERT_NE(c, nullptr) << name;
      const int64_t span = std::string(name) == "sliding_window_gqa" ? kWindow : kChunk;
      EXPECT_EQ(c->capacity, span - 1) << name;
      EXPECT_EQ(c->k.size(), 3 * (span - 1) * 4) << name;  // width = 1 K/V head * head_dim 4
      EXPECT_EQ(c->v.size(), 3 * (span - 1) * 4) << name;
    }
  }
  // Window of 1: the cache is empty and every token attends only to itself.
  BlockConfig one = variant_block("sliding_window_gqa");
  one.window_size = 1;
  LanguageModel model(variant_model(one));
  Rng rng(4);
  randomize(model, rng, 0.2f);
  EXPECT_EQ(dynamic_cast<LocalKVCacheState*>(model.make_decode_state(2, 9)[0].get())->capacity, 0);
  EXPECT_LT(test::cached_decoding_error(model, 9, {1, 3, 1, 4}, 9), 1e-4);
}

// Decoding 100 tokens with a state made for 8: only local layers, so nothing
// grows with the sequence.
TEST(AttentionVariants, LocalDecodingIsNotBoundedByMaxLen) {
  for (const char* name : {"sliding_window_gqa", "chunked_gqa"}) {
    BlockConfig b = variant_block(name);
    b.max_seq_len = 128;
    LanguageModel model(variant_model(b));
    Rng rng(6);
    randomize(model, rng, 0.2f);
    std::vector<int64_t> pieces(60, 1);
    pieces.insert(pieces.end(), {7, 13, 20});
    EXPECT_LT(test::cached_decoding_error(model, 100, pieces, 8), 1e-4) << name;
  }
}

TEST(AttentionVariants, DecodingRejectsAMismatchedState) {
  for (const char* name : {"gqa", "sliding_window_gqa", "chunked_gqa", "gated_gqa"}) {
    LanguageModel model(variant_model(variant_block(name)));
    std::vector<int32_t> ids{1, 2, 3};
    NoGradGuard ng;
    DecodeState wrong_batch = model.make_decode_state(2, 8);
    EXPECT_THROW(model.forward(Tokens{ids.data(), Shape{3, 1}}, &wrong_batch),
                 std::invalid_argument)
        << name;
    // A state made by another kind of attention.
    LanguageModel other(variant_model(variant_block(
        std::string(name) == "sliding_window_gqa" ? "chunked_gqa" : "sliding_window_gqa")));
    DecodeState foreign = other.make_decode_state(1, 8);
    EXPECT_THROW(model.forward(Tokens{ids.data(), Shape{1, 1}}, &foreign), std::invalid_argument)
        << name;
    current_graph().clear();
  }
}

// ------------------------------------------------------------ counts

TEST(AttentionVariants, ParameterCountsByHand) {
  // d_model 8, 2 heads of 4, 1 K/V head, bias: q 8*8+8, k 8*4+4, v 8*4+4, o 8*8+8.
  const int64_t gqa = (64 + 8) + (32 + 4) + (32 + 4) + (64 + 8);
  const int64_t gate = 64 + 8;  // d_model -> n_heads * head_dim, with bias
  auto attn_params = [](const std::string& name, bool bias, bool qk_norm) {
    BlockConfig c = variant_block(name);
    c.bias = bias;
    c.qk_norm = qk_norm;
    Block b(c);
    return b.attention().num_parameters();
  };
  EXPECT_EQ(attn_params("gqa", true, false), gqa);
  EXPECT_EQ(attn_params("sliding_window_gqa", true, false), gqa);
  EXPECT_EQ(attn_params("chunked_gqa", true, false), gqa);
  EXPECT_EQ(attn_params("gated_gqa", true, false), gqa + gate);
  EXPECT_EQ(attn_params("gated_gqa", false, false), 64 + 32 + 32 + 64 + 64);
  EXPECT_EQ(attn_params("gated_gqa", false, true), 64 + 32 + 32 + 64 + 64 + 4 + 4);
  EXPECT_EQ(attn_params("none", true, false), 0);
  // Whole block with attention none: the FFN (gated, 3 * 8 * 12 + biases 12 + 12 + 8) and its
  // RMSNorm (8); no attention norm.
  Block none(variant_block("none"));
  EXPECT_EQ(none.num_parameters(), 3 * 8 * 12 + 12 + 12 + 8 + 8);
}

// Keys attended per token, averaged over a sequence, from the masks by brute force.
// Mean over queries of the keys charged under GQA's convention: every key of
// the query's span as if unmasked (full attention charges all T keys).
double mean_keys(int64_t T, bool (*in_span)(int64_t q, int64_t k)) {
  double n = 0;
  for (int64_t q = 0; q < T; ++q)
    for (int64_t k = 0; k < T; ++k) n += in_span(q, k);
  return n / double(T);
}

TEST(AttentionVariants, MixingFlopsChargeTheSpanLikeGqaChargesTheSequence) {
  const double per_key = 4.0 * 8;  // Q Kᵀ and P V: 2 * 2 * n_heads * head_dim per key
  Block sw(variant_block("sliding_window_gqa")), ch(variant_block("chunked_gqa")),
      ga(variant_block("gated_gqa")), gq(variant_block("gqa"));
  // By hand: window 3 charges 3 keys per token once T >= 3.
  EXPECT_DOUBLE_EQ(sw.attention().mixing_flops_per_token(10), per_key * 3);
  // A span covering the sequence costs what full attention does.
  EXPECT_DOUBLE_EQ(sw.attention().mixing_flops_per_token(2),
                   gq.attention().mixing_flops_per_token(2));
  EXPECT_DOUBLE_EQ(ch.attention().mixing_flops_per_token(4),
                   gq.attention().mixing_flops_per_token(4));
  // Chunks of 4 over 10 positions: 4 * 4 + 4 * 4 + 2 * 2 = 36 keys.
  EXPECT_DOUBLE_EQ(ch.attention().mixing_flops_per_token(10), per_key * 36 / 10);
  // Long sequences against the chunk blocks by brute force.
  for (int64_t T : {1, 3, 4, 5, 64, 1000, 1001}) {
    EXPECT_DOUBLE_EQ(
        ch.attention().mixing_flops_per_token(T),
        per_key * mean_keys(T, [](int64_t q, int64_t k) { return q / kChunk == k / kChunk; }))
        << T;
    EXPECT_DOUBLE_EQ(sw.attention().mixing_flops_per_token(T),
                     per_key * double(std::min<int64_t>(T, kWindow)))
        << T;
  }
  // The gate is a projection (counted via parameters); the mixing is GQA's.
  EXPECT_DOUBLE_EQ(ga.attention().mixing_flops_per_token(100),
                   gq.attention().mixing_flops_per_token(100));
  // Model level: 6 * params + 3 * mixing per layer.
  ModelConfig m = variant_model(variant_block("sliding_window_gqa"));
  LanguageModel model(m);
  for (const LayerStats& s : model.layer_stats(10))
    EXPECT_DOUBLE_EQ(s.flops_per_token, 6.0 * double(s.params) + 3.0 * per_key * 3);
  LanguageModel none(variant_model(variant_block("none")));
  for (const LayerStats& s : none.layer_stats(10))
    EXPECT_DOUBLE_EQ(s.flops_per_token, 6.0 * double(s.params));
}

// ------------------------------------------------------------ training

TEST(AttentionVariants, SmallModelsTrain) {
  for (const char* name : kVariants) {
    BlockConfig b = variant_block(name);
    b.d_model = 16;
    b.d_ff = 32;
    ModelConfig m = variant_model(b);
    m.vocab_size = 128;
    auto [first, last] = test::train_on_repeated_text(m);
    RecordProperty(std::string(name) + "_loss",
                   std::to_string(first) + " -> " + std::to_string(last));
    EXPECT_LT(last, 0.7 * first) << name << ": " << first << " -> " << last;
  }
}

}  // namespace
}  // namespace bl
