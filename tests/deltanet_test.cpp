// Gated DeltaNet: the chunkwise op against a naive recurrence, the recurrent
// decoding op, the short conv and decay ops, finite-difference gradients of
// every op and of a Block, parameter/FLOP counts, decoding of a whole
// LanguageModel against its full forward pass, config rules, and training.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/attention/gated_deltanet.h"
#include "core/block.h"
#include "core/config.h"
#include "core/model.h"
#include "gradcheck.h"
#include "ops/causal_conv1d.h"
#include "ops/gated_delta_rule.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "train/optimizers/adamw.h"

namespace bl {
namespace {

using test::grad_check;
using test::make_input;

// ---------------------------------------------------------------- references

struct RuleInputs {
  int64_t B, T, H, D;
  std::vector<float> q, k, v, g, beta;  // (B, T, H*D) and (B, T, H)
};

// Random inputs in the ranges the layer produces: unit-norm k, q of norm
// ~sqrt(D), log decays in [-2, 0] (some near 0: slow decay), beta in (0, 1).
RuleInputs random_inputs(int64_t B, int64_t T, int64_t H, int64_t D, uint64_t seed) {
  Rng rng(seed);
  RuleInputs in{B, T, H, D, {}, {}, {}, {}, {}};
  const int64_t n = B * T * H * D;
  for (int64_t i = 0; i < n; ++i) {
    in.q.push_back(float(rng.normal()));
    in.k.push_back(float(rng.normal()));
    in.v.push_back(float(rng.normal()));
  }
  for (int64_t r = 0; r < B * T * H; ++r) {
    float* kr = in.k.data() + r * D;
    double s = 0;
    for (int64_t c = 0; c < D; ++c) s += double(kr[c]) * kr[c];
    for (int64_t c = 0; c < D; ++c) kr[c] = float(kr[c] / std::sqrt(s));
    in.g.push_back(float(-2.0 * rng.uniform() * rng.uniform()));
    in.beta.push_back(float(0.05 + 0.9 * rng.uniform()));
  }
  return in;
}

// The definition, in double: S (value x key) per (b, h), from zero,
//   S = alpha S (I - beta k kᵀ) + beta v kᵀ,  o = scale S q.
std::vector<double> naive_rule(const RuleInputs& in, double scale) {
  const int64_t D = in.D, ld = in.H * D;
  std::vector<double> out(in.q.size());
  for (int64_t b = 0; b < in.B; ++b)
    for (int64_t h = 0; h < in.H; ++h) {
      std::vector<double> S(size_t(D * D), 0.0), Sk(static_cast<size_t>(D));
      for (int64_t t = 0; t < in.T; ++t) {
        const int64_t row = (b * in.T + t) * ld + h * D, gi = (b * in.T + t) * in.H + h;
        const float *q = &in.q[size_t(row)], *k = &in.k[size_t(row)], *v = &in.v[size_t(row)];
        const double alpha = std::exp(double(in.g[size_t(gi)])), beta = in.beta[size_t(gi)];
        for (int64_t i = 0; i < D; ++i) {
          Sk[size_t(i)] = 0;
          for (int64_t j = 0; j < D; ++j) Sk[size_t(i)] += S[size_t(i * D + j)] * k[j];
        }
        // S (I - beta k kᵀ) = S - beta (S k) kᵀ
        for (int64_t i = 0; i < D; ++i)
          for (int64_t j = 0; j < D; ++j)
            S[size_t(i * D + j)] =
                alpha * (S[size_t(i * D + j)] - beta * Sk[size_t(i)] * k[j]) + beta * v[i] * k[j];
        for (int64_t i = 0; i < D; ++i) {
          double o = 0;
          for (int64_t j = 0; j < D; ++j) o += S[size_t(i * D + j)] * q[j];
          out[size_t(row + i)] = scale * o;
        }
      }
    }
  return out;
}

Tensor wrap(std::vector<float>& v, const Shape& s) {
  return current_graph().wrap(v.data(), s);
}

double max_abs_diff(const float* a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

// ---------------------------------------------------------------- the op

TEST(GatedDeltaRule, ChunkwiseMatchesNaiveRecurrence) {
  struct Case {
    int64_t B, T, H, D, chunk;
  };
  // Single chunk, exact multiples, partial last chunks, chunk 1, chunk 64 with T > 64.
  for (Case c : {Case{2, 7, 2, 4, 64}, Case{2, 12, 2, 4, 4}, Case{1, 13, 3, 8, 5},
                 Case{2, 9, 1, 4, 1}, Case{2, 150, 2, 16, 64}}) {
    RuleInputs in = random_inputs(c.B, c.T, c.H, c.D, uint64_t(c.T * 31 + c.chunk));
    const float scale = 1.0f / std::sqrt(float(c.D));
    const Shape x{c.B, c.T, c.H * c.D}, gs{c.B, c.T, c.H};
    NoGradGuard ng;
    Tensor o = gated_delta_rule(wrap(in.q, x), wrap(in.k, x), wrap(in.v, x), wrap(in.g, gs),
                                wrap(in.beta, gs), c.H, scale, c.chunk);
    const std::vector<double> ref = naive_rule(in, scale);
    EXPECT_LT(max_abs_diff(o.data(), ref), 2e-5) << "T " << c.T << " chunk " << c.chunk;
    current_graph().clear();
  }
}

TEST(GatedDeltaRule, RecurrentMatchesNaiveAndContinuesAcrossCalls) {
  const int64_t B = 2, T = 11, H = 2, D = 4;
  RuleInputs in = random_inputs(B, T, H, D, 5);
  const float scale = 0.5f;
  const std::vector<double> ref = naive_rule(in, scale);
  NoGradGuard ng;
  // Pieces of 4, 1 and 6 tokens on one persistent state.
  std::vector<float> state(size_t(B * H * D * D), 0.0f);
  double err = 0;
  int64_t t0 = 0;
  for (int64_t len : {4, 1, 6}) {
    std::vector<float> q, k, v, g, beta;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = t0; t < t0 + len; ++t) {
        const size_t r = size_t((b * T + t) * H * D), gr = size_t((b * T + t) * H);
        q.insert(q.end(), in.q.begin() + r, in.q.begin() + r + H * D);
        k.insert(k.end(), in.k.begin() + r, in.k.begin() + r + H * D);
        v.insert(v.end(), in.v.begin() + r, in.v.begin() + r + H * D);
        g.insert(g.end(), in.g.begin() + gr, in.g.begin() + gr + H);
        beta.insert(beta.end(), in.beta.begin() + gr, in.beta.begin() + gr + H);
      }
    const Shape x{B, len, H * D}, gs{B, len, H};
    Tensor o = gated_delta_rule_recurrent(wrap(q, x), wrap(k, x), wrap(v, x), wrap(g, gs),
                                          wrap(beta, gs), H, scale, state.data());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < len; ++t)
        for (int64_t c = 0; c < H * D; ++c)
          err = std::max(err, std::abs(double(o.data()[(b * len + t) * H * D + c]) -
                                       ref[size_t((b * T + t0 + t) * H * D + c)]));
    current_graph().clear();
    t0 += len;
  }
  EXPECT_LT(err, 2e-5);
}

TEST(GatedDeltaRule, RecurrentRefusesGradients) {
  Rng rng(1);
  auto q = make_input("q", Shape{1, 2, 4}, rng);
  std::vector<float> z(8, 0.1f), gz(2, -0.1f), bz(2, 0.5f), state(16, 0.0f);
  const Shape x{1, 2, 4}, gs{1, 2, 1};
  EXPECT_THROW(gated_delta_rule_recurrent(q->tensor(), wrap(z, x), wrap(z, x), wrap(gz, gs),
                                          wrap(bz, gs), 1, 1.0f, state.data()),
               std::invalid_argument);
  current_graph().clear();
}

TEST(GatedDeltaRule, RejectsBadShapes) {
  std::vector<float> a(24, 0.1f), gz(6, -0.1f);
  NoGradGuard ng;
  const Shape x{1, 3, 8}, gs{1, 3, 2};
  EXPECT_THROW(gated_delta_rule(wrap(a, x), wrap(a, x), wrap(a, x), wrap(gz, Shape{1, 3, 2}),
                                wrap(gz, gs), 3, 1.0f, 4),
               std::invalid_argument);  // 8 not divisible by 3 heads
  EXPECT_THROW(gated_delta_rule(wrap(a, x), wrap(a, x), wrap(a, x), wrap(gz, Shape{1, 6}),
                                wrap(gz, gs), 2, 1.0f, 4),
               std::invalid_argument);  // g not (B, T, H)
  EXPECT_THROW(
      gated_delta_rule(wrap(a, x), wrap(a, x), wrap(a, x), wrap(gz, gs), wrap(gz, gs), 2, 1.0f, 0),
      std::invalid_argument);  // chunk 0
  current_graph().clear();
}

// Inputs as Parameters for the finite-difference check: k of norm ~1,
// negative log decays, beta in (0, 1).
struct RuleParams {
  std::unique_ptr<Parameter> q, k, v, g, beta;
  std::vector<Parameter*> all() { return {q.get(), k.get(), v.get(), g.get(), beta.get()}; }
};
RuleParams rule_params(int64_t B, int64_t T, int64_t H, int64_t D, uint64_t seed) {
  Rng rng(seed);
  RuleParams p;
  p.q = make_input("q", Shape{B, T, H * D}, rng);
  p.k = make_input("k", Shape{B, T, H * D}, rng, 1.0f / std::sqrt(float(D)));
  p.v = make_input("v", Shape{B, T, H * D}, rng);
  p.g = make_input("g", Shape{B, T, H}, rng);
  p.beta = make_input("beta", Shape{B, T, H}, rng);
  for (int64_t i = 0; i < p.g->numel(); ++i) {
    p.g->data()[i] = -0.6f * std::abs(p.g->data()[i]) - 0.05f;
    p.beta->data()[i] = 0.5f + 0.4f * std::tanh(p.beta->data()[i]);
  }
  return p;
}

TEST(GatedDeltaRule, GradientMatchesFiniteDifferences) {
  struct Case {
    int64_t T, chunk;
  };
  // One chunk; three chunks with a partial last one; chunks of one token.
  for (Case c : {Case{6, 64}, Case{8, 3}, Case{4, 1}}) {
    RuleParams p = rule_params(2, c.T, 2, 3, uint64_t(c.T + c.chunk));
    EXPECT_TRUE(grad_check(
        [&] {
          return gated_delta_rule(p.q->tensor(), p.k->tensor(), p.v->tensor(), p.g->tensor(),
                                  p.beta->tensor(), 2, 0.7f, c.chunk);
        },
        p.all()))
        << "T " << c.T << " chunk " << c.chunk;
  }
}

TEST(GatedDeltaRule, GradientOfLongSequenceMatchesFiniteDifferences) {
  // Chunk 64 with T = 70: a full chunk, then a state carried into a short one.
  RuleParams p = rule_params(1, 70, 1, 4, 9);
  test::GradCheckOptions opt;
  opt.max_checks_per_input = 24;
  EXPECT_TRUE(grad_check(
      [&] {
        return gated_delta_rule(p.q->tensor(), p.k->tensor(), p.v->tensor(), p.g->tensor(),
                                p.beta->tensor(), 1, 0.5f, 64);
      },
      p.all(), opt));
}

// Big enough for the multithreaded paths; tasks own disjoint rows, so the
// forward and every gradient are bitwise independent of the thread count.
TEST(GatedDeltaRule, ThreadCountDoesNotChangeResults) {
  RuleParams p = rule_params(4, 100, 2, 16, 12);
  Rng rng(2);
  auto w = make_input("w", Shape{32, 4}, rng);
  std::vector<std::vector<float>> runs[2];
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<Parameter*> ps = p.all();
    ps.push_back(w.get());
    for (Parameter* q : ps) q->zero_grad();
    Graph& g = current_graph();
    Tensor v = causal_conv1d(p.v->tensor(), w->tensor());
    Tensor y = gated_delta_rule(p.q->tensor(), p.k->tensor(), v, p.g->tensor(), p.beta->tensor(), 2,
                                0.25f, 32);
    float* dy = g.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) dy[i] = float(std::sin(0.37 * double(i)));
    auto& r = runs[threads - 1];
    r.emplace_back(y.data(), y.data() + y.numel());
    g.run_tape();
    for (Parameter* q : ps) r.emplace_back(q->grad(), q->grad() + q->numel());
    g.clear();
  }
  set_num_threads(saved);
  ASSERT_EQ(runs[0].size(), runs[1].size());
  for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_EQ(runs[0][i], runs[1][i]) << "buffer " << i;
}

TEST(GatedDeltaDecay, ValuesAndGradient) {
  Rng rng(3);
  auto a = make_input("a", Shape{2, 3, 2}, rng, 2.0f);
  auto a_log = make_input("A_log", Shape{2}, rng);
  auto dt = make_input("dt_bias", Shape{2}, rng);
  a->data()[0] = 30.0f;  // softplus's linear branch
  {
    NoGradGuard ng;
    Tensor g = gated_delta_decay(a->tensor(), a_log->tensor(), dt->tensor());
    for (int64_t i = 0; i < a->numel(); ++i) {
      const int64_t h = i % 2;
      const double x = double(a->data()[i]) + dt->data()[h];
      const double want = -std::exp(double(a_log->data()[h])) * std::log1p(std::exp(x));
      EXPECT_NEAR(g.data()[i], want, 1e-5 * std::max(1.0, std::abs(want))) << i;
    }
    current_graph().clear();
  }
  EXPECT_TRUE(
      grad_check([&] { return gated_delta_decay(a->tensor(), a_log->tensor(), dt->tensor()); },
                 {a.get(), a_log.get(), dt.get()}));
}

// ---------------------------------------------------------------- short conv

std::vector<double> naive_conv(const float* x, const float* w, const float* prefix, int64_t B,
                               int64_t T, int64_t C, int64_t K) {
  std::vector<double> y(size_t(B * T * C), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) {
          const int64_t s = t - (K - 1) + j;
          double xv = 0;
          if (s >= 0)
            xv = x[(b * T + s) * C + c];
          else if (prefix)
            xv = prefix[(b * (K - 1) + K - 1 + s) * C + c];
          y[size_t((b * T + t) * C + c)] += double(w[c * K + j]) * xv;
        }
  return y;
}

TEST(CausalConv1d, MatchesNaiveWithAndWithoutPrefix) {
  Rng rng(4);
  const int64_t B = 2, T = 5, C = 3, K = 4;
  auto x = make_input("x", Shape{B, T, C}, rng);
  auto w = make_input("w", Shape{C, K}, rng);
  std::vector<float> prefix(size_t(B * (K - 1) * C));
  for (auto& p : prefix) p = float(rng.normal());
  NoGradGuard ng;
  for (const float* pre : std::vector<const float*>{nullptr, prefix.data()}) {
    Tensor y = causal_conv1d(x->tensor(), w->tensor(), pre);
    EXPECT_LT(max_abs_diff(y.data(), naive_conv(x->data(), w->data(), pre, B, T, C, K)), 1e-5);
    current_graph().clear();
  }
}

TEST(CausalConv1d, GradientMatchesFiniteDifferences) {
  Rng rng(6);
  const int64_t B = 2, T = 70, C = 3, K = 3;  // two time blocks per sequence
  auto x = make_input("x", Shape{B, T, C}, rng);
  auto w = make_input("w", Shape{C, K}, rng);
  std::vector<float> prefix(size_t(B * (K - 1) * C), 0.5f);
  for (const float* pre : std::vector<const float*>{nullptr, prefix.data()})
    EXPECT_TRUE(grad_check([&] { return causal_conv1d(x->tensor(), w->tensor(), pre); },
                           {x.get(), w.get()}));
}

TEST(CausalConv1d, AdvanceKeepsTheLastInputs) {
  const int64_t B = 2, C = 2, K = 4;  // tail of 3 rows
  std::vector<float> tail(size_t(B * 3 * C));
  for (size_t i = 0; i < tail.size(); ++i) tail[i] = float(i);  // b0: 0..5, b1: 6..11
  std::vector<float> x1 = {100, 101, 200, 201};                 // (2, 1, 2)
  causal_conv1d_advance(tail.data(), wrap(x1, Shape{B, 1, C}), K);
  EXPECT_EQ(tail, (std::vector<float>{2, 3, 4, 5, 100, 101, 8, 9, 10, 11, 200, 201}));
  std::vector<float> x5(size_t(B * 5 * C));
  for (size_t i = 0; i < x5.size(); ++i) x5[i] = float(1000 + i);
  causal_conv1d_advance(tail.data(), wrap(x5, Shape{B, 5, C}), K);
  EXPECT_EQ(tail, (std::vector<float>{1004, 1005, 1006, 1007, 1008, 1009, 1014, 1015, 1016, 1017,
                                      1018, 1019}));
  current_graph().clear();
}

// ---------------------------------------------------------------- the component

BlockConfig deltanet_block(bool conv) {
  BlockConfig c;
  c.attention = "gated_deltanet";
  c.ffn = "gated";
  c.norm = "rms_norm";
  c.position = "none";
  c.d_model = 8;
  c.n_heads = 2;
  c.d_ff = 12;
  c.max_seq_len = 128;
  c.bias = false;
  c.use_short_conv = conv;
  c.conv_kernel_size = 3;
  return c;
}

void randomize(Module& m, Rng& rng, float std = 0.3f) {
  for (Parameter* p : m.parameters()) {
    p->init_normal(rng, std);
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  }
}

GatedDeltaNet& deltanet_of(Block& b) {
  auto* a = dynamic_cast<GatedDeltaNet*>(&b.attention());
  EXPECT_NE(a, nullptr);
  return *a;
}

TEST(GatedDeltaNet, BlockGradientMatchesFiniteDifferences) {
  for (bool conv : {false, true})
    for (bool pre_norm : {true, false}) {
      BlockConfig c = deltanet_block(conv);
      c.pre_norm = pre_norm;
      Block block(c);
      deltanet_of(block).set_chunk_size(2);  // T = 5: chunks of 2, 2, 1
      Rng rng(11);
      randomize(block, rng);
      auto x = make_input("x", Shape{2, 5, 8}, rng);
      std::vector<Parameter*> inputs{x.get()};
      for (Parameter* p : block.parameters()) inputs.push_back(p);
      Rng drop(0);
      // q and k are L2-normalised per head of only 4 elements, so the block is far
      // more curved than a softmax block: at the default h = 1e-2 the central
      // difference's O(h^2) truncation error reaches the tolerance (and shrinks as
      // h^2 below it). Float32 rounding at h = 3e-3 is ~3e-5 |L|, well under atol.
      test::GradCheckOptions opt;
      opt.h = 3e-3;
      EXPECT_TRUE(
          grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); }, inputs, opt))
          << "conv " << conv << " pre_norm " << pre_norm;
    }
}

TEST(GatedDeltaNet, ChunkSizeDoesNotChangeTheOutput) {
  BlockConfig c = deltanet_block(true);
  Block block(c);
  Rng rng(2);
  randomize(block, rng);
  auto x = make_input("x", Shape{2, 40, 8}, rng);
  NoGradGuard ng;
  Rng drop(0);
  std::vector<float> ref;
  for (int64_t chunk : {64, 7, 1}) {
    deltanet_of(block).set_chunk_size(chunk);
    Tensor y = block.forward(x->tensor(), nullptr, false, drop);
    if (ref.empty()) {
      ref.assign(y.data(), y.data() + y.numel());
    } else {
      double err = 0;
      for (int64_t i = 0; i < y.numel(); ++i)
        err = std::max(err, double(std::abs(y.data()[i] - ref[size_t(i)])));
      EXPECT_LT(err, 1e-5) << "chunk " << chunk;
    }
    current_graph().clear();
  }
}

TEST(GatedDeltaNet, ParameterCountsByHand) {
  // d_model 8, 2 heads of 4, kernel 3, no biases:
  // q, k, v, z, o: 5 * 8 * 8 = 320; a, b: 2 * 8 * 2 = 32; A_log, dt_bias: 4;
  // o_norm: 4; q/k/v convs: 3 * 8 * 3 = 72.
  for (bool conv : {false, true}) {
    Block block(deltanet_block(conv));
    EXPECT_EQ(block.attention().num_parameters(), conv ? 432 : 360) << "conv " << conv;
  }
  // Whole model: embeddings 11 * 8 (tied), per layer attention + 2 RMSNorms (16)
  // + SwiGLU (3 * 8 * 12 = 288), final norm 8.
  ModelConfig m;
  m.vocab_size = 11;
  m.n_layers = 2;
  m.block = deltanet_block(true);
  LanguageModel model(m);
  EXPECT_EQ(model.num_parameters(), 88 + 2 * (432 + 16 + 288) + 8);
}

TEST(GatedDeltaNet, MixingFlopsOfTheChunkwiseForm) {
  Block block(deltanet_block(false));  // 2 heads, head_dim D = 4
  GatedDeltaNet& dn = deltanet_of(block);
  ASSERT_EQ(dn.chunk_size(), 32);
  // Per head and chunk of n rows: 10 n^2 D + 6 n D^2 + (n-1) n (n+1) / 3.
  // seq_len 100 = chunks 32, 32, 32, 4: n = 32 gives 40960 + 3072 + 10912 = 54944,
  // n = 4 gives 640 + 384 + 20 = 1044.
  EXPECT_NEAR(dn.mixing_flops_per_token(100), 2.0 * (3 * 54944 + 1044) / 100.0, 1e-9);
  // One chunk of 16: 10240 + 1536 + 1360.
  EXPECT_NEAR(dn.mixing_flops_per_token(16), 2.0 * 13136 / 16.0, 1e-9);
  // Chunk 64, seq_len 100 = 64 + 36: 257344 and 70836.
  dn.set_chunk_size(64);
  EXPECT_NEAR(dn.mixing_flops_per_token(100), 2.0 * (257344 + 70836) / 100.0, 1e-9);
  // The model's training FLOPs: 6 per parameter + 3 x mixing, per layer.
  ModelConfig m;
  m.vocab_size = 11;
  m.n_layers = 1;
  m.block = deltanet_block(false);
  LanguageModel model(m);
  const LayerStats s = model.layer_stats(16)[0];
  EXPECT_EQ(s.params, 360 + 16 + 288);
  EXPECT_DOUBLE_EQ(s.flops_per_token, 6.0 * (360 + 16 + 288) + 3.0 * 2.0 * 13136 / 16.0);
}

ModelConfig deltanet_model(bool conv) {
  ModelConfig m;
  m.vocab_size = 11;
  m.n_layers = 2;
  m.block = deltanet_block(conv);
  return m;
}

// Logits of the full forward pass vs incremental decoding in steps of the
// given sizes (summing to T), max abs error.
double decode_error(LanguageModel& model, int64_t T, const std::vector<int64_t>& steps) {
  const int64_t B = 2, V = model.config().vocab_size;
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < B * T; ++i) ids.push_back(int32_t((i * 7 + i / 5 + 3) % V));
  Graph& g = current_graph();
  NoGradGuard ng;
  Tensor full = model.forward(Tokens{ids.data(), Shape{B, T}});
  std::vector<float> ref(full.data(), full.data() + full.numel());
  g.clear();
  DecodeState st = model.make_decode_state(B, T);
  double err = 0;
  int64_t t0 = 0;
  for (int64_t len : steps) {
    std::vector<int32_t> chunk;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = t0; t < t0 + len; ++t) chunk.push_back(ids[size_t(b * T + t)]);
    Tensor out = model.forward(Tokens{chunk.data(), Shape{B, len}}, &st);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < len; ++t)
        for (int64_t v = 0; v < V; ++v)
          err = std::max(err, double(std::abs(out.data()[(b * len + t) * V + v] -
                                              ref[size_t((b * T + t0 + t) * V + v)])));
    g.clear();
    t0 += len;
  }
  EXPECT_EQ(t0, T);
  EXPECT_EQ(st[0]->length, T);
  return err;
}

TEST(GatedDeltaNet, DecodingMatchesFullForward) {
  const int64_t T = 80;  // two full 32-position chunks and a partial one
  for (bool conv : {false, true}) {
    LanguageModel model(deltanet_model(conv));
    Rng rng(3);
    model.init_weights(rng);
    randomize(model, rng, 0.2f);
    std::vector<int64_t> ones(size_t(T), 1);
    EXPECT_LT(decode_error(model, T, ones), 1e-4) << "one token at a time, conv " << conv;
    // Chunks shorter and longer than the conv tail, across the chunk boundary.
    EXPECT_LT(decode_error(model, T, {5, 1, 2, 30, 7, 35}), 1e-4) << "chunks, conv " << conv;
    EXPECT_LT(decode_error(model, T, {T}), 1e-4) << "one prefill, conv " << conv;
  }
}

TEST(GatedDeltaNet, HybridWithAttentionDecodesLikeFullForward) {
  // Qwen-Next style: DeltaNet layers around a GQA layer (RoPE), per-layer configs.
  ModelConfig m = deltanet_model(true);
  m.n_layers = 3;
  BlockConfig attn = m.block;
  attn.attention = "gqa";
  attn.n_kv_heads = 1;
  attn.position = "rope";
  m.block_configs = {m.block, attn, m.block};
  LanguageModel model(m);
  Rng rng(8);
  model.init_weights(rng);
  randomize(model, rng, 0.2f);
  EXPECT_LT(decode_error(model, 70, {3, 1, 1, 60, 5}), 1e-4);
}

TEST(GatedDeltaNet, InitMatchesThePaperRecipe) {
  LanguageModel model(deltanet_model(true));
  Rng rng(1);
  model.init_weights(rng);
  for (auto& [name, p] : model.named_parameters()) {
    if (name.find("A_log") != std::string::npos) {
      for (int64_t h = 0; h < p->numel(); ++h) {
        EXPECT_GE(p->data()[h], 0.0f);
        EXPECT_LE(p->data()[h], std::log(16.0f) + 1e-6f);
      }
    } else if (name.find("dt_bias") != std::string::npos) {
      for (int64_t h = 0; h < p->numel(); ++h) {
        const double dt = std::log1p(std::exp(double(p->data()[h])));  // softplus
        EXPECT_GE(dt, 1e-3 - 1e-7);
        EXPECT_LE(dt, 1e-1 + 1e-7);
      }
    } else if (name.find("conv") != std::string::npos) {
      double mx = 0;
      for (int64_t i = 0; i < p->numel(); ++i) mx = std::max(mx, double(std::abs(p->data()[i])));
      EXPECT_LE(mx, 1.0 / std::sqrt(3.0));
      EXPECT_GT(mx, 0.1);
    }
  }
}

TEST(GatedDeltaNet, ConfigRulesAndRegistryFields) {
  const auto& e = attention_registry().entry("gated_deltanet");
  EXPECT_EQ(e.fields, (std::vector<std::string>{"use_short_conv", "conv_kernel_size"}));
  BlockConfig b = deltanet_block(true);
  EXPECT_TRUE(validation_errors(b, "block").empty());
  b.conv_kernel_size = 1;
  std::vector<std::string> errs = validation_errors(b, "block");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("block.conv_kernel_size (1) must be >= 2 for attention 'gated_deltanet'"),
            std::string::npos)
      << errs[0];
  b.use_short_conv = false;  // the kernel size is unused without the conv
  EXPECT_TRUE(validation_errors(b, "block").empty());
  b.conv_kernel_size = 0;
  errs = validation_errors(b, "block");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("block.conv_kernel_size (0) must be > 0"), std::string::npos);
}

TEST(GatedDeltaNet, TinyModelLearnsARepeatedString) {
  ModelConfig m;
  m.vocab_size = 6;
  m.n_layers = 2;
  m.block = deltanet_block(true);
  m.block.d_model = 32;
  m.block.n_heads = 4;
  m.block.d_ff = 64;
  LanguageModel model(m);
  Rng rng(7);
  model.init_weights(rng);
  // "abracadabra " repeated: after 'a' comes b, c, d or ' ', so context matters.
  const std::string text = "abracadabra ", chars = "abcdr ";
  const int64_t B = 4, T = 48;
  std::vector<int32_t> x, y;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      x.push_back(int32_t(chars.find(text[size_t(b + t) % text.size()])));
      y.push_back(int32_t(chars.find(text[size_t(b + t + 1) % text.size()])));
    }
  OptimizerOptions o;
  o.weight_decay = 0.0f;
  AdamW opt(model.parameters(), o);
  Graph& g = current_graph();
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    Tensor loss = model.loss(Tokens{x.data(), Shape{B, T}}, Tokens{y.data(), Shape{B, T}});
    const double l = loss.item();
    if (step == 0) first = l;
    last = l;
    g.backward(loss);
    g.clear();
    opt.step(1e-2f);
  }
  EXPECT_NEAR(first, std::log(6.0), 0.3);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace bl
