// Multi-head latent attention: the attention op with a value head dim of its
// own, hand-counted parameters and FLOPs, gradient checks, latent-only cache,
// absorbed decoding equal to the full pass, validation, training.
#include "core/attention/mla.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "component_checks.h"
#include "core/attention/gqa.h"
#include "core/block.h"
#include "core/config.h"
#include "core/position/none.h"
#include "gradcheck.h"
#include "ops/attention.h"
#include "tensor/graph.h"

namespace bl {
namespace {

// ---------------------------------------------------------------- attention op, Dv != D

// Double-precision causal attention with value heads of dv; q at positions q_offset + i.
std::vector<double> naive_attention(const float* q, const float* k, const float* v, int64_t B,
                                    int64_t tq, int64_t tk, int64_t hq, int64_t hkv, int64_t d,
                                    int64_t dv, float scale, int64_t q_offset) {
  std::vector<double> out(size_t(B * tq * hq * dv), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < hq; ++h)
      for (int64_t i = 0; i < tq; ++i) {
        const int64_t kh = h / (hq / hkv), n = std::min(tk, q_offset + i + 1);
        std::vector<double> s(static_cast<size_t>(n));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < d; ++c)
            acc += double(q[(b * tq + i) * hq * d + h * d + c]) *
                   k[(b * tk + j) * hkv * d + kh * d + c];
          s[size_t(j)] = scale * acc;
          mx = std::max(mx, s[size_t(j)]);
        }
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (int64_t j = 0; j < n; ++j)
          for (int64_t c = 0; c < dv; ++c)
            out[size_t((b * tq + i) * hq * dv + h * dv + c)] +=
                s[size_t(j)] / sum * v[(b * tk + j) * hkv * dv + kh * dv + c];
      }
  return out;
}

TEST(AttentionValueHeadDim, MatchesNaiveAndFiniteDifferences) {
  struct Case {
    int64_t tq, tk, hq, hkv, d, dv, q_offset;
  };
  // MLA's two uses: per-head keys with a shorter value (training), and one shared
  // latent key head with a wider value (absorbed decoding), plus offsets.
  for (Case c :
       {Case{7, 7, 2, 2, 12, 8, 0}, Case{3, 9, 4, 1, 10, 6, 6}, Case{34, 34, 2, 1, 5, 19, 0}}) {
    Rng rng(4);
    auto q = test::make_input("q", Shape{2, c.tq, c.hq * c.d}, rng);
    auto k = test::make_input("k", Shape{2, c.tk, c.hkv * c.d}, rng);
    auto v = test::make_input("v", Shape{2, c.tk, c.hkv * c.dv}, rng);
    AttentionOptions o;
    o.scale = 0.4f;
    o.q_offset = c.q_offset;
    o.v_head_dim = c.dv;
    auto f = [&] { return attention(q->tensor(), k->tensor(), v->tensor(), c.hq, c.hkv, o); };
    {
      NoGradGuard ng;
      Tensor y = f();
      ASSERT_EQ(y.shape(), (Shape{2, c.tq, c.hq * c.dv}));
      auto ref = naive_attention(q->data(), k->data(), v->data(), 2, c.tq, c.tk, c.hq, c.hkv, c.d,
                                 c.dv, o.scale, c.q_offset);
      for (int64_t i = 0; i < y.numel(); ++i) ASSERT_NEAR(y.data()[i], ref[size_t(i)], 1e-5) << i;
      current_graph().clear();
    }
    EXPECT_TRUE(test::grad_check(f, {q.get(), k.get(), v.get()}));
  }
  // Without v_head_dim a v of another width is still an error.
  Rng rng(1);
  auto q = test::make_input("q", Shape{1, 3, 8}, rng);
  auto v = test::make_input("v", Shape{1, 3, 6}, rng);
  EXPECT_THROW(attention(q->tensor(), q->tensor(), v->tensor(), 2, 2, AttentionOptions{}),
               std::invalid_argument);
  current_graph().clear();
}

// ---------------------------------------------------------------- MLA component

BlockConfig mla_block(std::optional<int64_t> q_rank, std::optional<int64_t> rope_dim, bool bias,
                      const std::string& position = "rope") {
  BlockConfig c;
  c.attention = "mla";
  c.ffn = "gated";
  c.norm = "rms_norm";
  c.position = position;
  c.d_model = 16;
  c.n_heads = 2;  // head_dim 8
  c.d_ff = 24;
  c.kv_lora_rank = 6;
  c.q_lora_rank = q_rank;
  c.rope_dim = rope_dim;
  c.bias = bias;
  c.max_seq_len = 32;
  return c;
}

TEST(MLA, ParameterCountsByHand) {
  // d = 16, H = 2, head_dim 8, kv_lora_rank 6, rope_dim 4: q heads are 8 + 4 = 12 wide.
  // q_proj 16*24 + 24 bias, kv_down 16*6, kv_norm 6, k_rope_proj 16*4, k_up 6*16,
  // v_up 6*16, o_proj 16*16 + 16 bias.
  EXPECT_EQ(MLA(mla_block({}, 4, true)).num_parameters(),
            (384 + 24) + 96 + 6 + 64 + 96 + 96 + (256 + 16));
  // q_lora_rank 5: q_down 16*5, q_norm 5, q_up 5*24; no biases.
  EXPECT_EQ(MLA(mla_block(5, 4, false)).num_parameters(),
            (80 + 5 + 120) + 96 + 6 + 64 + 96 + 96 + 256);
  // rope_dim unset = 0: no k_rope_proj, q heads 8 wide.
  EXPECT_EQ(MLA(mla_block({}, {}, false, "none")).num_parameters(), 256 + 96 + 6 + 96 + 96 + 256);
}

// The MLA formulas written out in double precision from the module's own
// weights: per head q = [RoPE(q_rope) | q_nope], k = [RoPE(W_kr x) | W_uk_h c],
// v = W_uv_h c with c = RMSNorm(W_dkv x), scores / sqrt(head_dim + rope_dim).
std::vector<double> naive_mla(MLA& m, const BlockConfig& c, const Parameter& x) {
  std::map<std::string, Parameter*> w;
  for (auto& [name, p] : m.named_parameters()) w[name] = p;
  const int64_t B = x.shape()[0], T = x.shape()[1], d = c.d_model, H = c.n_heads;
  const int64_t hd = c.head_dim(), rd = c.rope_dim.value_or(0), qw = hd + rd;
  auto lin = [](const Parameter* W, const Parameter* bias, const std::vector<double>& in) {
    const int64_t out = W->shape()[0], n = W->shape()[1];
    std::vector<double> y(size_t(out), 0.0);
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < n; ++i) y[size_t(o)] += double(W->data()[o * n + i]) * in[size_t(i)];
      if (bias) y[size_t(o)] += bias->data()[o];
    }
    return y;
  };
  auto rms = [&](std::vector<double> v, const Parameter* g) {
    double ms = 0;
    for (double e : v) ms += e * e / double(v.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = v[i] / std::sqrt(ms + c.norm_eps) * g->data()[i];
    return v;
  };
  auto rotate = [&](double* v, int64_t pos) {  // rotate-half over rd dims
    for (int64_t i = 0; i < rd / 2; ++i) {
      const double a = double(pos) * std::pow(c.rope_theta, -2.0 * double(i) / double(rd));
      const double x1 = v[i], x2 = v[i + rd / 2];
      v[i] = x1 * std::cos(a) - x2 * std::sin(a);
      v[i + rd / 2] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  };
  auto get = [&](const char* n) { return w.count(n) ? w[n] : nullptr; };
  std::vector<double> out(size_t(B * T * d), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const size_t nt = static_cast<size_t>(T);
    std::vector<std::vector<double>> q(nt), kr(nt), kn(nt), v(nt);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> xt(x.data() + (b * T + t) * d, x.data() + (b * T + t + 1) * d);
      q[size_t(t)] = get("q_proj.weight")
                         ? lin(get("q_proj.weight"), get("q_proj.bias"), xt)
                         : lin(get("q_up.weight"), nullptr,
                               rms(lin(get("q_down.weight"), nullptr, xt), get("q_norm.weight")));
      for (int64_t h = 0; h < H; ++h) rotate(q[size_t(t)].data() + h * qw, t);
      std::vector<double> lat = rms(lin(get("kv_down.weight"), nullptr, xt), get("kv_norm.weight"));
      kn[size_t(t)] = lin(get("k_up.weight"), nullptr, lat);
      v[size_t(t)] = lin(get("v_up.weight"), nullptr, lat);
      if (rd > 0) {
        kr[size_t(t)] = lin(get("k_rope_proj.weight"), nullptr, xt);
        rotate(kr[size_t(t)].data(), t);
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> o(size_t(H * hd), 0.0);
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> s;
        double mx = -1e300, sum = 0;
        for (int64_t u = 0; u <= t; ++u) {
          double acc = 0;
          for (int64_t i = 0; i < rd; ++i)
            acc += q[size_t(t)][size_t(h * qw + i)] * kr[size_t(u)][size_t(i)];
          for (int64_t i = 0; i < hd; ++i)
            acc += q[size_t(t)][size_t(h * qw + rd + i)] * kn[size_t(u)][size_t(h * hd + i)];
          s.push_back(acc / std::sqrt(double(qw)));
          mx = std::max(mx, s.back());
        }
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t u = 0; u <= t; ++u)
          for (int64_t i = 0; i < hd; ++i)
            o[size_t(h * hd + i)] += s[size_t(u)] / sum * v[size_t(u)][size_t(h * hd + i)];
      }
      std::vector<double> y = lin(get("o_proj.weight"), get("o_proj.bias"), o);
      std::copy(y.begin(), y.end(), out.begin() + (b * T + t) * d);
    }
  }
  return out;
}

TEST(MLA, FullPassMatchesTheFormulas) {
  for (BlockConfig c :
       {mla_block({}, 4, true), mla_block(5, 8, false), mla_block({}, {}, true, "none")}) {
    MLA m(c);
    Rng rng(21);
    test::randomize(m, rng);
    auto x = test::make_input("x", Shape{2, 6, 16}, rng);
    NoPosition none;
    NoGradGuard ng;
    Tensor y = m.forward(x->tensor(), none, nullptr);
    std::vector<double> ref = naive_mla(m, c, *x);
    ASSERT_EQ(size_t(y.numel()), ref.size());
    double err = 0;
    for (int64_t i = 0; i < y.numel(); ++i)
      err = std::max(err, std::abs(y.data()[i] - ref[size_t(i)]));
    EXPECT_LT(err, 1e-4) << "q_lora " << c.q_lora_rank.value_or(0) << " rope_dim "
                         << c.rope_dim.value_or(0);
    current_graph().clear();
  }
}

TEST(MLA, MixingFlopsAndLayerStats) {
  MLA m(mla_block({}, 4, true));
  // 2 H T (head_dim + rope_dim) for scores + 2 H T head_dim for the weighted sum.
  EXPECT_DOUBLE_EQ(m.mixing_flops_per_token(100), 2.0 * 2 * 100 * 12 + 2.0 * 2 * 100 * 8);
  ModelConfig cfg;
  cfg.vocab_size = 13;
  cfg.n_layers = 1;
  cfg.block = mla_block({}, 4, true);
  LanguageModel model(cfg);
  auto stats = model.layer_stats(100);
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].attention, "mla");
  EXPECT_DOUBLE_EQ(stats[0].flops_per_token,
                   6.0 * double(stats[0].params) + 3.0 * m.mixing_flops_per_token(100));
}

TEST(MLA, CacheHoldsOnlyTheLatentAndTheRopeKey) {
  BlockConfig c = mla_block(5, 4, true);
  MLA m(c);
  auto st = m.make_state(3, 20);
  auto* s = dynamic_cast<MLACacheState*>(st.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->width, 6 + 4);  // kv_lora_rank + rope_dim floats per position
  EXPECT_EQ(s->rows.size(), 3 * 20 * (6 + 4));
  // Against GQA with the same heads: 2 * n_heads * head_dim = 32 floats per position.
  c.attention = "mha";
  GQA mha(c);
  auto kv = mha.make_state(3, 20);
  auto* g = dynamic_cast<KVCacheState*>(kv.get());
  EXPECT_EQ(g->k.size() + g->v.size(), 3 * 20 * 32);
}

TEST(MLA, BlockGradientsMatchFiniteDifferences) {
  struct Case {
    std::optional<int64_t> q_rank, rope_dim;
    bool bias;
    const char* position;
    bool mup;
  };
  for (Case cs : {Case{{}, 4, true, "rope", false}, Case{5, 4, false, "none", false},
                  Case{5, {}, true, "learned", true}}) {
    BlockConfig c = mla_block(cs.q_rank, cs.rope_dim, cs.bias, cs.position);
    c.mup = cs.mup;
    Block block(c);
    Rng rng(11);
    test::randomize(block, rng);
    auto x = test::make_input("x", Shape{2, 5, 16}, rng);
    std::vector<Parameter*> inputs{x.get()};
    for (Parameter* p : block.parameters()) inputs.push_back(p);
    Rng drop(0);
    EXPECT_TRUE(
        test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); }, inputs))
        << "full pass, q_lora " << cs.q_rank.value_or(0) << " rope_dim " << cs.rope_dim.value_or(0);
    // The absorbed (cached) form: cached latents are constants, so check the
    // parameters it differentiates itself (queries, W_uk, W_uv, output).
    std::vector<Parameter*> absorbed;
    for (auto& [name, p] : block.named_parameters())
      if (name.find("attention.q_") != std::string::npos ||
          name.find("attention.k_up") != std::string::npos ||
          name.find("attention.v_up") != std::string::npos ||
          name.find("attention.o_proj") != std::string::npos)
        absorbed.push_back(p);
    ASSERT_GE(absorbed.size(), 4u);
    EXPECT_TRUE(test::grad_check(
        [&] {
          auto st = block.attention().make_state(2, 5);
          return block.forward(x->tensor(), st.get(), true, drop);
        },
        absorbed))
        << "absorbed pass, q_lora " << cs.q_rank.value_or(0);
  }
}

ModelConfig mla_model(std::optional<int64_t> q_rank, std::optional<int64_t> rope_dim,
                      const std::string& position) {
  ModelConfig m;
  m.vocab_size = 17;
  m.n_layers = 2;
  m.block = mla_block(q_rank, rope_dim, true, position);
  return m;
}

TEST(MLA, AbsorbedCachedDecodingMatchesFullForward) {
  const int64_t T = 12;
  for (ModelConfig cfg : {mla_model({}, 4, "rope"), mla_model(5, 8, "rope"),
                          mla_model(5, {}, "learned"), mla_model({}, 2, "none")}) {
    const std::string what = "q_lora " + std::to_string(cfg.block.q_lora_rank.value_or(0)) +
                             " rope_dim " + std::to_string(cfg.block.rope_dim.value_or(0)) + " " +
                             cfg.block.position;
    EXPECT_LT(test::decode_error(cfg, T, test::one_at_a_time(T)), 1e-4) << what;
    EXPECT_LT(test::decode_error(cfg, T, {5, 1, 3, 3}), 1e-4) << what;
    EXPECT_LT(test::decode_error(cfg, T, {T}), 1e-4) << what;
  }
}

TEST(MLA, RopeIsAppliedByMlaWhateverThePositionSetting) {
  // Decoupled RoPE makes MLA order-aware with position "none": swapping two
  // earlier tokens changes the last logits. Without rope_dim it cannot be.
  for (std::optional<int64_t> rd : {std::optional<int64_t>(4), std::optional<int64_t>()}) {
    ModelConfig cfg = mla_model({}, rd, "none");
    cfg.n_layers = 1;
    LanguageModel model(cfg);
    Rng rng(2);
    model.init_weights(rng);
    test::randomize(model, rng, 0.3f);
    NoGradGuard ng;
    std::vector<int32_t> a{1, 2, 3, 4, 5}, b{2, 1, 3, 4, 5};
    Tensor ya = model.forward(Tokens{a.data(), Shape{1, 5}});
    std::vector<float> la(ya.data() + 4 * 17, ya.data() + 5 * 17);
    Tensor yb = model.forward(Tokens{b.data(), Shape{1, 5}});
    double diff = 0;
    for (int v = 0; v < 17; ++v)
      diff = std::max(diff, double(std::abs(la[size_t(v)] - yb.data()[4 * 17 + v])));
    if (rd)
      EXPECT_GT(diff, 1e-3);
    else
      EXPECT_LT(diff, 1e-5);
    current_graph().clear();
  }
}

TEST(MLA, ValidationRulesNameTheField) {
  auto errors = [](const BlockConfig& b) {
    ModelConfig m;
    m.vocab_size = 17;
    m.n_layers = 1;
    m.block = b;
    std::string s;
    for (auto& e : validation_errors(m)) s += e + "\n";
    return s;
  };
  using ::testing::HasSubstr;
  BlockConfig ok = mla_block(5, 4, true);
  EXPECT_EQ(errors(ok), "");
  BlockConfig b = ok;
  b.kv_lora_rank.reset();
  EXPECT_THAT(errors(b), HasSubstr("block.kv_lora_rank must be set for attention 'mla'"));
  b = ok;
  b.rope_dim = 3;
  EXPECT_THAT(errors(b), HasSubstr("block.rope_dim (3) must be even"));
  b = ok;
  b.rope_dim.reset();
  EXPECT_THAT(errors(b),
              HasSubstr("block.rope_dim must be set for attention 'mla' with position 'rope'"));
  b.position = "learned";
  EXPECT_EQ(errors(b), "");
  b.position = "alibi";
  EXPECT_THAT(errors(b), HasSubstr("block.position 'alibi' is not supported by attention 'mla'"));
  b = ok;
  b.qk_norm = true;
  EXPECT_THAT(errors(b), HasSubstr("block.qk_norm is not supported by attention 'mla'"));
  b = ok;
  b.q_lora_rank = 0;
  EXPECT_THAT(errors(b), HasSubstr("block.q_lora_rank (0) must be > 0 when set"));
  // Built without validation, the component itself refuses a missing rank.
  b = ok;
  b.kv_lora_rank.reset();
  EXPECT_THROW(MLA m(b), std::invalid_argument);
}

TEST(MLA, RegistryListsItsFields) {
  const auto& e = attention_registry().entry("mla");
  EXPECT_EQ(e.fields,
            (std::vector<std::string>{"kv_lora_rank", "q_lora_rank", "rope_dim", "rope_theta"}));
  EXPECT_FALSE(e.summary.empty());
}

TEST(MLA, SmallModelTrains) {
  ModelConfig cfg = mla_model(8, 4, "rope");
  cfg.vocab_size = 64;
  cfg.block.d_model = 32;
  cfg.block.n_heads = 4;
  cfg.block.d_ff = 64;
  cfg.block.kv_lora_rank = 16;
  auto [first, last] = test::train_on_repeated_text(cfg, 30);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace bl
