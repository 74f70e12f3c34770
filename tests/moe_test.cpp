// Mixture-of-experts feed-forwards (moe, shared_moe, latent_moe): outputs equal
// a dense per-token reference, exact parameter counts, gradient checks of a
// Block and of a model loss with the auxiliary losses, only selected experts
// compute, load metrics and aux losses reach the trainer, the aux-loss-free
// bias follows the load and survives checkpoints, and small models learn.
#include "core/ffn/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "core/aux_outputs.h"
#include "core/block.h"
#include "core/ffn/latent_moe.h"
#include "core/ffn/moe_routing.h"
#include "core/ffn/shared_moe.h"
#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "expect_error.h"
#include "gradcheck.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "temp_files.h"
#include "tensor/graph.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace bl {
namespace {

Parameter* param(Module& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return p;
  ADD_FAILURE() << "no parameter " << name;
  return nullptr;
}

// Random weights (norm weights near 1) so no path is trivially zero; the
// selection bias is left alone (tests set it explicitly).
void randomize(Module& m, Rng& rng, float std = 0.3f) {
  for (Parameter* p : m.parameters()) {
    if (!p->trainable()) continue;
    p->init_normal(rng, std);
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  }
}

std::vector<Parameter*> trainable(Module& m) {
  std::vector<Parameter*> out;
  for (Parameter* p : m.parameters())
    if (p->trainable()) out.push_back(p);
  return out;
}

BlockConfig moe_block(const std::string& ffn) {
  BlockConfig c;
  c.attention = "gqa";
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.norm = "rms_norm";
  c.position = "rope";
  c.d_model = 8;
  c.d_ff = 12;
  c.max_seq_len = 16;
  c.ffn = ffn;
  c.n_experts = 4;
  c.top_k_experts = 2;
  c.moe_d_ff = 6;
  c.bias = false;
  if (ffn == "shared_moe") {
    c.n_experts = 8;
    c.moe_n_groups = 4;
    c.moe_topk_groups = 2;
    c.n_shared_experts = 2;
    c.shared_expert_d_ff = 5;
    c.moe_routed_scaling_factor = 2.5;
  }
  if (ffn == "latent_moe") {
    c.moe_latent_size = 4;
    c.shared_expert_d_ff = 10;
    c.moe_routed_scaling_factor = 1.5;
  }
  return c;
}

// ------------------------------------------------------------ dense reference

using Vec = std::vector<double>;

Vec matvec(const float* w, const Vec& x, int64_t out, const float* b = nullptr) {
  const int64_t in = int64_t(x.size());
  Vec y(size_t(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double s = b ? b[o] : 0.0;
    for (int64_t i = 0; i < in; ++i) s += double(w[o * in + i]) * x[size_t(i)];
    y[size_t(o)] = s;
  }
  return y;
}
double silu(double v) {
  return v / (1 + std::exp(-v));
}
double relu2(double v) {
  return v > 0 ? v * v : 0.0;
}

// SwiGLU of width f from raw (f, d) / (d, f) weights (+ optional biases).
Vec swiglu_ffn(const Vec& x, int64_t f, const float* wg, const float* wu, const float* wd,
               const float* bg = nullptr, const float* bu = nullptr, const float* bd = nullptr) {
  Vec g = matvec(wg, x, f, bg), u = matvec(wu, x, f, bu), h(size_t(f), 0.0);
  for (int64_t i = 0; i < f; ++i) h[size_t(i)] = silu(g[size_t(i)]) * u[size_t(i)];
  return matvec(wd, h, int64_t(x.size()), bd);
}
Vec relu2_ffn(const Vec& x, int64_t f, const float* wu, const float* wd) {
  Vec u = matvec(wu, x, f), h(size_t(f), 0.0);
  for (int64_t i = 0; i < f; ++i) h[size_t(i)] = relu2(u[size_t(i)]);
  return matvec(wd, h, int64_t(x.size()));
}

// Top-k by value (ties to the lower index) among the allowed experts.
std::vector<int> top_k(const Vec& v, int k, const std::vector<bool>& allowed) {
  std::vector<int> idx;
  for (int e = 0; e < int(v.size()); ++e)
    if (allowed[size_t(e)]) idx.push_back(e);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int a, int b) { return v[size_t(a)] > v[size_t(b)]; });
  idx.resize(size_t(k));
  return idx;
}

// The router's view of one token: scores (softmax / sigmoid), the picks and
// how far the selection is from a tie (the smallest gap at a top-k or
// top-group boundary, in biased-score units).
struct Selection {
  Vec scores;
  std::vector<int> sel;
  double margin = INFINITY;
};

// Gap between the k-th and (k+1)-th largest allowed values.
double boundary_gap(const Vec& v, int k, const std::vector<bool>& allowed) {
  Vec a;
  for (size_t e = 0; e < v.size(); ++e)
    if (allowed[e]) a.push_back(v[e]);
  std::sort(a.rbegin(), a.rend());
  return int(a.size()) > k ? a[size_t(k - 1)] - a[size_t(k)] : INFINITY;
}

Selection select_ref(Module& ffn, const BlockConfig& c, const Vec& x) {
  const int64_t E = *c.n_experts, K = c.top_k_experts;
  Selection r;
  Vec logits = matvec(param(ffn, "router.weight")->data(), x, E);
  r.scores.assign(size_t(E), 0.0);
  std::vector<bool> allowed(size_t(E), true);
  Vec biased;
  if (c.ffn == "moe") {
    const double m = *std::max_element(logits.begin(), logits.end());
    double s = 0;
    for (int64_t e = 0; e < E; ++e) s += r.scores[size_t(e)] = std::exp(logits[size_t(e)] - m);
    for (double& p : r.scores) p /= s;
    biased = r.scores;
  } else {
    const float* bias = param(ffn, "router.expert_bias")->data();
    for (int64_t e = 0; e < E; ++e) r.scores[size_t(e)] = 1 / (1 + std::exp(-logits[size_t(e)]));
    biased = r.scores;
    for (int64_t e = 0; e < E; ++e) biased[size_t(e)] += bias[e];
    const int64_t G = c.moe_n_groups, per = E / G;
    if (G > 1) {
      Vec gs(size_t(G), 0.0);
      for (int64_t g = 0; g < G; ++g) {
        Vec v(biased.begin() + g * per, biased.begin() + (g + 1) * per);
        std::sort(v.rbegin(), v.rend());
        gs[size_t(g)] = v[0] + (per > 1 ? v[1] : 0.0);
      }
      const std::vector<bool> all_groups(size_t(G), true);
      r.margin = boundary_gap(gs, int(c.moe_topk_groups), all_groups);
      std::vector<int> groups = top_k(gs, int(c.moe_topk_groups), all_groups);
      std::fill(allowed.begin(), allowed.end(), false);
      for (int g : groups)
        for (int64_t e = g * per; e < (g + 1) * per; ++e) allowed[size_t(e)] = true;
    }
  }
  r.margin = std::min(r.margin, boundary_gap(biased, int(K), allowed));
  r.sel = top_k(biased, int(K), allowed);
  return r;
}

// Smallest selection margin over the tokens of x (rows of d_model).
double min_margin(Module& ffn, const BlockConfig& c, const float* x, int64_t n) {
  double m = INFINITY;
  for (int64_t t = 0; t < n; ++t)
    m = std::min(m, select_ref(ffn, c, Vec(x + t * c.d_model, x + (t + 1) * c.d_model)).margin);
  return m;
}

// The component's output for one token, computed densely from its weights.
Vec reference(Module& ffn, const BlockConfig& c, const Vec& x) {
  const int64_t D = c.d_model;
  const int64_t F = c.moe_d_ff.value_or(c.d_ff);
  const Selection r = select_ref(ffn, c, x);
  const Vec& scores = r.scores;
  const std::vector<int>& sel = r.sel;
  double den = 0;
  for (int e : sel) den += scores[size_t(e)];
  const double scale = c.ffn == "moe" ? 1.0 : c.moe_routed_scaling_factor;

  Vec y(size_t(D), 0.0);
  if (c.ffn == "latent_moe") {
    const int64_t L = *c.moe_latent_size;
    Vec z = matvec(param(ffn, "latent_down_proj.weight")->data(), x, L), acc(size_t(L), 0.0);
    for (int e : sel) {
      Vec o = relu2_ffn(z, F, param(ffn, "experts.up_proj.weight")->data() + e * F * L,
                        param(ffn, "experts.down_proj.weight")->data() + e * L * F);
      for (int64_t i = 0; i < L; ++i)
        acc[size_t(i)] += scale * scores[size_t(e)] / den * o[size_t(i)];
    }
    y = matvec(param(ffn, "latent_up_proj.weight")->data(), acc, D);
    const int64_t S = c.n_shared_experts.value_or(1) * c.shared_expert_d_ff.value_or(c.d_ff);
    Vec sh = relu2_ffn(x, S, param(ffn, "shared_experts.up_proj.weight")->data(),
                       param(ffn, "shared_experts.down_proj.weight")->data());
    for (int64_t i = 0; i < D; ++i) y[size_t(i)] += sh[size_t(i)];
    return y;
  }
  auto b = [&](const char* n, int64_t off) -> const float* {
    return c.bias ? param(ffn, n)->data() + off : nullptr;
  };
  for (int e : sel) {
    Vec o = swiglu_ffn(x, F, param(ffn, "experts.gate_proj.weight")->data() + e * F * D,
                       param(ffn, "experts.up_proj.weight")->data() + e * F * D,
                       param(ffn, "experts.down_proj.weight")->data() + e * D * F,
                       b("experts.gate_proj.bias", e * F), b("experts.up_proj.bias", e * F),
                       b("experts.down_proj.bias", e * D));
    for (int64_t i = 0; i < D; ++i) y[size_t(i)] += scale * scores[size_t(e)] / den * o[size_t(i)];
  }
  if (c.ffn == "shared_moe") {
    const int64_t S = c.n_shared_experts.value_or(1) * c.shared_expert_d_ff.value_or(F);
    Vec sh = swiglu_ffn(x, S, param(ffn, "shared_experts.gate_proj.weight")->data(),
                        param(ffn, "shared_experts.up_proj.weight")->data(),
                        param(ffn, "shared_experts.down_proj.weight")->data(),
                        b("shared_experts.gate_proj.bias", 0), b("shared_experts.up_proj.bias", 0),
                        b("shared_experts.down_proj.bias", 0));
    for (int64_t i = 0; i < D; ++i) y[size_t(i)] += sh[size_t(i)];
  }
  return y;
}

struct Case {
  std::string ffn;
  bool bias;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.ffn << (c.bias ? "_bias" : "");
}

class MoEComponent : public ::testing::TestWithParam<Case> {
 protected:
  BlockConfig config() const {
    BlockConfig c = moe_block(GetParam().ffn);
    c.bias = GetParam().bias;
    return c;
  }
};

// Expert-selection bias with distinct values (it only changes the selection).
void set_selection_bias(Module& ffn, Rng& rng) {
  for (auto& [n, p] : ffn.named_parameters())
    if (n == "router.expert_bias") p->init_normal(rng, 0.2f);
}

TEST_P(MoEComponent, MatchesDensePerTokenReference) {
  const BlockConfig c = config();
  auto ffn = ffn_registry().create(c.ffn, c);
  Rng rng(21);
  randomize(*ffn, rng);
  set_selection_bias(*ffn, rng);
  auto x = test::make_input("x", Shape{3, 7, c.d_model}, rng);
  NoGradGuard ng;
  Tensor y = ffn->forward(x->tensor());
  ASSERT_EQ(y.shape(), x->shape());
  double max_err = 0;
  for (int64_t t = 0; t < 21; ++t) {
    Vec xt(x->data() + t * c.d_model, x->data() + (t + 1) * c.d_model);
    Vec ref = reference(*ffn, c, xt);
    for (int64_t i = 0; i < c.d_model; ++i)
      max_err = std::max(max_err, std::abs(ref[size_t(i)] - y.data()[t * c.d_model + i]));
  }
  EXPECT_LT(max_err, 1e-5);
  current_graph().clear();
}

// Finite differences are only valid while no perturbation flips a top-k pick:
// inputs are drawn (deterministically, seed after seed) until every token's
// selection margin exceeds kMargin, far above what an h = 1e-2 step moves.
constexpr double kMargin = 0.05;

// relu^2 (latent_moe experts) has a jump in its second derivative at 0, where
// central differences are off by O(h * jump): a smaller step keeps that under
// the tolerance (float32 rounding, ~1e-7 |L| / h, stays below 1e-4).
test::GradCheckOptions options(const BlockConfig& c) {
  test::GradCheckOptions o;
  if (c.ffn == "latent_moe") o.h = 2e-3;
  return o;
}

template <class Margin>
std::unique_ptr<Parameter> input_away_from_ties(const Shape& s, Margin&& margin_of) {
  for (uint64_t seed = 100; seed < 2000; ++seed) {
    Rng rng(seed);
    auto x = test::make_input("x", s, rng);
    NoGradGuard ng;
    const double m = margin_of(*x);
    current_graph().clear();
    if (m > kMargin) return x;
  }
  ADD_FAILURE() << "no input with a routing margin > " << kMargin;
  return nullptr;
}

TEST_P(MoEComponent, GradientMatchesFiniteDifferencesIncludingAuxLosses) {
  const BlockConfig c = config();
  auto ffn = ffn_registry().create(c.ffn, c);
  Rng rng(31);
  randomize(*ffn, rng);
  set_selection_bias(*ffn, rng);
  const int64_t n = 10;
  auto x = input_away_from_ties(Shape{2, 5, c.d_model},
                                [&](Parameter& p) { return min_margin(*ffn, c, p.data(), n); });
  ASSERT_TRUE(x);
  std::vector<Parameter*> inputs{x.get()};
  for (Parameter* p : trainable(*ffn)) inputs.push_back(p);
  // Output and every auxiliary loss, so their gradients into the router are checked too.
  EXPECT_TRUE(test::grad_check(
      [&] {
        aux_outputs().clear();
        std::vector<Tensor> parts{reshape(ffn->forward(x->tensor()), Shape{n * c.d_model})};
        for (const AuxOutputs::Loss& l : aux_outputs().losses()) parts.push_back(l.value);
        return concat(parts, 0);
      },
      inputs, options(c)));
  EXPECT_EQ(aux_outputs().losses().size(), c.ffn == "moe" ? 2u : 0u);
}

// A test-only ffn that records its input and delegates to a real MoE, so the
// Block test can measure the routing margins where routing happens.
class Probe : public FeedForward {
 public:
  Probe(const BlockConfig& c, const std::string& inner) {
    inner_ = add_module("inner", ffn_registry().create(inner, c));
  }
  Tensor forward(const Tensor& x) override {
    input.assign(x.data(), x.data() + x.numel());
    return inner_->forward(x);
  }
  FeedForward* inner_;
  std::vector<float> input;
};

TEST_P(MoEComponent, BlockGradientMatchesFiniteDifferences) {
  const BlockConfig c = config();
  static const bool registered = [] {
    for (std::string name : {"moe", "shared_moe", "latent_moe"})
      ffn_registry().add(
          "probe_" + name,
          [name](const BlockConfig& bc) {
            return std::unique_ptr<FeedForward>(new Probe(bc, name));
          },
          "test probe");
    return true;
  }();
  ASSERT_TRUE(registered);
  BlockConfig pc = c;
  pc.ffn = "probe_" + c.ffn;
  Block block(pc);
  auto* probe = static_cast<Probe*>(block.ffn());
  Rng rng(11);
  randomize(block, rng);
  set_selection_bias(*probe->inner_, rng);
  Rng drop(0);
  auto x = input_away_from_ties(Shape{2, 4, c.d_model}, [&](Parameter& p) {
    block.forward(p.tensor(), nullptr, false, drop);
    return min_margin(*probe->inner_, c, probe->input.data(), 8);
  });
  ASSERT_TRUE(x);
  std::vector<Parameter*> inputs{x.get()};
  for (Parameter* p : trainable(block)) inputs.push_back(p);
  EXPECT_TRUE(test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); },
                               inputs, options(c)));
}

INSTANTIATE_TEST_SUITE_P(FFN, MoEComponent,
                         ::testing::Values(Case{"moe", false}, Case{"moe", true},
                                           Case{"shared_moe", false}, Case{"shared_moe", true},
                                           Case{"latent_moe", false}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.ffn + (info.param.bias ? "_bias" : "");
                         });

// ------------------------------------------------------------ counts

TEST(MoE, ExactParameterCountsByHand) {
  // moe, with biases: router 8*4 (no bias); per expert gate 6*8+6, up 6*8+6, down 8*6+8.
  BlockConfig m = moe_block("moe");
  m.bias = true;
  MoEFFN moe(m);
  const int64_t moe_expert = (6 * 8 + 6) * 2 + 8 * 6 + 8;
  EXPECT_EQ(moe.num_parameters(), 8 * 4 + 4 * moe_expert);
  EXPECT_EQ(moe.active_parameters(), 8 * 4 + 2 * moe_expert);

  // shared_moe: router 8*8 + selection bias 8; 8 experts of 3*6*8; shared 2 experts of
  // width 5, fused into one SwiGLU of width 10: 3*10*8.
  SharedMoEFFN sh(moe_block("shared_moe"));
  EXPECT_EQ(sh.num_parameters(), 8 * 8 + 8 + 8 * 3 * 6 * 8 + 3 * 10 * 8);
  EXPECT_EQ(sh.active_parameters(), 8 * 8 + 8 + 2 * 3 * 6 * 8 + 3 * 10 * 8);
  EXPECT_FALSE(sh.router().bias()->trainable());

  // latent_moe: router 8*4 + bias 4; latent projections 8*4 + 4*8; 4 relu2 experts of
  // 6*4 + 4*6 in the latent; one shared relu2 expert of width 10: 10*8 + 8*10.
  LatentMoEFFN lat(moe_block("latent_moe"));
  EXPECT_EQ(lat.num_parameters(), 8 * 4 + 4 + 8 * 4 + 4 * 8 + 4 * (6 * 4 + 4 * 6) + 10 * 8 * 2);
  EXPECT_EQ(lat.active_parameters(), 8 * 4 + 4 + 8 * 4 + 4 * 8 + 2 * (6 * 4 + 4 * 6) + 10 * 8 * 2);

  // Defaults: moe_d_ff unset = d_ff, shared width unset = expert width (shared_moe) or
  // d_ff (latent_moe), one shared expert, latent = d_model / 4.
  BlockConfig d = moe_block("shared_moe");
  d.moe_d_ff.reset();
  d.shared_expert_d_ff.reset();
  d.n_shared_experts.reset();
  EXPECT_EQ(SharedMoEFFN(d).num_parameters(), 8 * 8 + 8 + 8 * 3 * 12 * 8 + 3 * 12 * 8);
  BlockConfig dl = moe_block("latent_moe");
  dl.moe_latent_size.reset();
  dl.shared_expert_d_ff.reset();
  dl.moe_d_ff = 3;
  EXPECT_EQ(LatentMoEFFN(dl).num_parameters(),
            8 * 4 + 4 + 8 * 2 + 2 * 8 + 4 * (3 * 2 + 2 * 3) + 12 * 8 * 2);
  BlockConfig z = moe_block("shared_moe");
  z.n_shared_experts = 0;
  EXPECT_EQ(SharedMoEFFN(z).num_parameters(), 8 * 8 + 8 + 8 * 3 * 6 * 8);
}

ModelConfig moe_model(const std::string& ffn, int64_t vocab = 11) {
  ModelConfig m;
  m.vocab_size = vocab;
  m.n_layers = 2;
  m.block = moe_block(ffn);
  return m;
}

TEST(MoE, ModelLayerStatsCountActiveExperts) {
  LanguageModel model(moe_model("shared_moe"));
  auto stats = model.layer_stats(16);
  Block& b = model.block(0);
  const int64_t inactive = 6 * 3 * 6 * 8;  // 6 of 8 routed experts idle per token
  EXPECT_EQ(stats[0].params, b.num_parameters());
  EXPECT_EQ(stats[0].active_params, b.num_parameters() - inactive);
  EXPECT_DOUBLE_EQ(stats[0].flops_per_token, 6.0 * double(stats[0].active_params) +
                                                 3.0 * b.attention().mixing_flops_per_token(16));
}

// ------------------------------------------------------------ routing

TEST(MoE, GroupLimitedSelection) {
  // 2 tokens, 8 experts in 4 groups of 2, top-2 groups, top-3 experts.
  // Token 0: expert 7 is the single best, but group 3 = {6, 7} sums to 0.95 + 0.0,
  // below groups 0 (0.9 + 0.8) and 1 (0.7 + 0.6): 7 is not eligible.
  const std::vector<float> scores = {0.9f, 0.8f, 0.7f, 0.6f, 0.1f, 0.1f, 0.0f, 0.95f,
                                     0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  std::vector<int32_t> sel(6);
  select_top_k(scores.data(), nullptr, 2, 8, 3, 4, 2, sel.data());
  EXPECT_EQ(std::vector<int32_t>(sel.begin(), sel.begin() + 3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(std::vector<int32_t>(sel.begin() + 3, sel.end()), (std::vector<int32_t>{7, 6, 5}));
  // Without groups expert 7 wins token 0.
  select_top_k(scores.data(), nullptr, 2, 8, 3, 1, 1, sel.data());
  EXPECT_EQ(sel[0], 7);
  // The bias steers selection: +1 on expert 4 makes it token 1's first pick.
  std::vector<float> bias(8, 0.0f);
  bias[4] = 1.0f;
  select_top_k(scores.data(), bias.data(), 2, 8, 3, 1, 1, sel.data());
  EXPECT_EQ(sel[3], 4);
  current_graph().clear();
}

TEST(MoE, SelectionOfManyTokensMatchesReference) {
  // Enough tokens for the parallel path; 16 experts in 4 groups, 2 groups, top-3.
  const int64_t n = 3000, E = 16;
  Rng rng(12);
  std::vector<float> scores(size_t(n * E), 0.0f), bias(size_t(E), 0.0f);
  for (float& v : scores) v = float(rng.uniform());
  for (float& v : bias) v = float(rng.normal() * 0.1);
  std::vector<int32_t> sel(size_t(n * 3));
  select_top_k(scores.data(), bias.data(), n, E, 3, 4, 2, sel.data());
  BlockConfig c;
  c.n_experts = E;
  c.top_k_experts = 3;
  c.moe_n_groups = 4;
  c.moe_topk_groups = 2;
  for (int64_t t = 0; t < n; ++t) {
    Vec v(size_t(E), 0.0);
    for (int64_t e = 0; e < E; ++e)
      v[size_t(e)] = double(scores[size_t(t * E + e)]) + bias[size_t(e)];
    // Group scores and picks as in select_ref (float sums can differ in the last bit,
    // so only tokens clear of ties are compared).
    Vec gs(4, 0.0);
    for (int g = 0; g < 4; ++g) {
      Vec gv(v.begin() + g * 4, v.begin() + (g + 1) * 4);
      std::sort(gv.rbegin(), gv.rend());
      gs[size_t(g)] = gv[0] + gv[1];
    }
    std::vector<bool> allowed(size_t(E), false);
    const std::vector<bool> all4(4, true);
    for (int g : top_k(gs, 2, all4))
      for (int e = g * 4; e < (g + 1) * 4; ++e) allowed[size_t(e)] = true;
    if (boundary_gap(gs, 2, all4) < 1e-5 || boundary_gap(v, 3, allowed) < 1e-5) continue;
    std::vector<int> ref = top_k(v, 3, allowed);
    for (int j = 0; j < 3; ++j) ASSERT_EQ(sel[size_t(t * 3 + j)], ref[size_t(j)]) << "token " << t;
  }
  current_graph().clear();
}

// Gradient of each expert's slices of the stacked weights is exactly zero iff the
// expert received no token; its load metric is then zero too.
void expect_only_selected_experts_compute(FeedForward& ffn, int64_t E, const Tensor& x) {
  Graph& g = current_graph();
  for (Parameter* p : ffn.parameters()) p->zero_grad();
  aux_outputs().clear();
  Tensor out = ffn.forward(x);
  std::map<int64_t, double> load;
  for (const AuxOutputs::Metric& m : aux_outputs().metrics()) {
    const std::string pre = "moe_load/layer0/expert";
    ASSERT_EQ(m.name.rfind(pre, 0), 0u) << m.name;
    load[std::stoll(m.name.substr(pre.size()))] = m.value;
  }
  ASSERT_EQ(int64_t(load.size()), E);
  g.backward(sum(out));
  g.clear();
  int idle = 0;
  for (auto& [name, p] : ffn.named_parameters()) {
    if (name.rfind("experts.", 0) != 0) continue;  // the stacked routed experts
    const int64_t per = p->numel() / E;
    for (int64_t e = 0; e < E; ++e) {
      bool any = false;
      for (int64_t i = 0; i < per; ++i) any |= p->grad()[e * per + i] != 0.0f;
      EXPECT_EQ(any, load[e] > 0) << name << " expert " << e;
      idle += load[e] == 0;
    }
  }
  EXPECT_GT(idle, 0) << "the test needs an idle expert";
}

TEST(MoE, OnlySelectedExpertsCompute) {
  // moe: 3 tokens, top-1 of 8 experts: at least 5 experts get no token.
  BlockConfig m = moe_block("moe");
  m.n_experts = 8;
  m.top_k_experts = 1;
  m.bias = true;
  MoEFFN moe(m);
  Rng rng(4);
  randomize(moe, rng);
  auto x = test::make_input("x", Shape{1, 3, 8}, rng);
  expect_only_selected_experts_compute(moe, 8, x->tensor());

  // shared_moe / latent_moe: a very negative selection bias keeps expert 1 idle.
  for (const char* name : {"shared_moe", "latent_moe"}) {
    BlockConfig c = moe_block(name);
    auto ffn = ffn_registry().create(name, c);
    randomize(*ffn, rng);
    param(*ffn, "router.expert_bias")->data()[1] = -100.0f;
    auto xs = test::make_input("x", Shape{2, 6, 8}, rng);
    expect_only_selected_experts_compute(*ffn, *c.n_experts, xs->tensor());
  }
}

TEST(MoE, AuxLossesMatchTheirDefinitions) {
  BlockConfig c = moe_block("moe");
  MoEFFN moe(c);
  Rng rng(6);
  randomize(moe, rng);
  auto x = test::make_input("x", Shape{2, 5, 8}, rng);
  aux_outputs().clear();
  moe.forward(x->tensor());
  const auto& losses = aux_outputs().losses();
  ASSERT_EQ(losses.size(), 2u);
  EXPECT_EQ(losses[0].name, "moe_aux_loss");
  EXPECT_FLOAT_EQ(losses[0].weight, 0.01f);
  EXPECT_EQ(losses[1].name, "moe_z_loss");
  EXPECT_FLOAT_EQ(losses[1].weight, 0.001f);
  // Recompute: aux = E * sum_i f_i P_i, z = mean(logsumexp^2).
  Vec f(4, 0.0), P(4, 0.0);
  double z = 0;
  for (int64_t t = 0; t < 10; ++t) {
    Vec xt(x->data() + t * 8, x->data() + (t + 1) * 8);
    Selection s = select_ref(moe, c, xt);
    for (int e : s.sel) f[size_t(e)] += 1.0 / 20;
    for (int e = 0; e < 4; ++e) P[size_t(e)] += s.scores[size_t(e)] / 10;
    Vec logits = matvec(param(moe, "router.weight")->data(), xt, 4);
    double se = 0;
    for (double l : logits) se += std::exp(l);
    z += std::log(se) * std::log(se) / 10;
  }
  double aux = 0;
  for (int e = 0; e < 4; ++e) aux += 4 * f[size_t(e)] * P[size_t(e)];
  EXPECT_NEAR(losses[0].value.item(), aux, 1e-5);
  EXPECT_NEAR(losses[1].value.item(), z, 1e-4);
  // Loads are the f_i and sum to 1.
  double total = 0;
  for (const AuxOutputs::Metric& m : aux_outputs().metrics()) total += m.value;
  EXPECT_NEAR(total, 1.0, 1e-12);
  current_graph().clear();
}

TEST(MoE, ModelLossAddsWeightedAuxLosses) {
  ModelConfig cfg = moe_model("moe");
  cfg.block.moe_aux_loss_coef = 0.5;
  cfg.block.moe_z_loss_coef = 0.25;
  LanguageModel model(cfg);
  Rng rng(5);
  model.init_weights(rng);
  std::vector<int32_t> ids{1, 4, 2, 9, 0, 3, 3, 7, 10, 5, 6, 2};
  std::vector<int32_t> tg{4, 2, 9, 0, 3, 1, 7, 10, 5, 6, 2, 8};
  Tensor loss = model.loss(Tokens{ids.data(), Shape{2, 6}}, Tokens{tg.data(), Shape{2, 6}});
  double expect = model.lm_loss();
  int n_aux = 0, n_z = 0;
  for (const AuxOutputs::Loss& l : aux_outputs().losses()) {
    expect += double(l.weight) * l.value.item();
    n_aux += l.name == "moe_aux_loss";
    n_z += l.name == "moe_z_loss";
  }
  EXPECT_EQ(n_aux, 2);  // one per layer
  EXPECT_EQ(n_z, 2);
  EXPECT_NEAR(loss.item(), expect, 1e-5);
  EXPECT_GT(loss.item(), model.lm_loss() + 0.5);  // aux >= ~1 per layer at init, weighted 0.5
  // Per-layer load metrics carry the layer index.
  int layer1 = 0;
  for (const AuxOutputs::Metric& m : aux_outputs().metrics())
    layer1 += m.name.rfind("moe_load/layer1/expert", 0) == 0;
  EXPECT_EQ(layer1, 4);
  current_graph().clear();
}

TEST(MoE, IncrementalDecodingMatchesFullForward) {
  for (const char* name : {"moe", "shared_moe", "latent_moe"}) {
    LanguageModel model(moe_model(name));
    Rng rng(3);
    model.init_weights(rng);
    randomize(model, rng, 0.2f);
    const int64_t T = 7, V = 11;
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < 2 * T; ++i) ids.push_back(int32_t((i * 7 + 3) % V));
    NoGradGuard ng;
    Graph& g = current_graph();
    Tensor full = model.forward(Tokens{ids.data(), Shape{2, T}});
    std::vector<float> ref(full.data(), full.data() + full.numel());
    g.clear();
    DecodeState st = model.make_decode_state(2, T);
    double max_err = 0;
    int64_t t0 = 0;
    for (int64_t len : {3, 1, 2, 1}) {  // a chunk of 3, single tokens, a chunk of 2
      std::vector<int32_t> chunk;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t t = t0; t < t0 + len; ++t) chunk.push_back(ids[size_t(b * T + t)]);
      Tensor o = model.forward(Tokens{chunk.data(), Shape{2, len}}, &st);
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t t = 0; t < len; ++t)
          for (int64_t v = 0; v < V; ++v)
            max_err = std::max(max_err, double(std::abs(o.data()[(b * len + t) * V + v] -
                                                        ref[size_t((b * T + t0 + t) * V + v)])));
      g.clear();
      t0 += len;
    }
    EXPECT_LT(max_err, 1e-4) << name;
  }
}

// ------------------------------------------------------------ balancing bias

TEST(MoE, BiasUpdateLowersOverloadedExperts) {
  for (const char* name : {"shared_moe", "latent_moe"}) {
    BlockConfig c = moe_block(name);
    c.moe_n_groups = 1;
    c.moe_topk_groups = 1;
    c.moe_bias_update_rate = 0.01;
    auto ffn = ffn_registry().create(name, c);
    Rng rng(8);
    randomize(*ffn, rng);
    const int64_t E = *c.n_experts;
    // Skew: a large bias on experts 0 and 1 sends every token to them.
    float* bias = param(*ffn, "router.expert_bias")->data();
    bias[0] = 5.0f, bias[1] = 5.0f;
    auto x = test::make_input("x", Shape{2, 6, 8}, rng);
    {
      NoGradGuard ng;  // an eval forward is not counted
      ffn->forward(x->tensor());
      current_graph().clear();
      ffn->visit([](Module& m) { m.after_optimizer_step(); });
      EXPECT_EQ(bias[0], 5.0f) << name;
    }
    ffn->forward(x->tensor());  // a training forward
    current_graph().clear();
    ffn->visit([](Module& m) { m.after_optimizer_step(); });
    EXPECT_FLOAT_EQ(bias[0], 5.0f - 0.01f) << name;
    EXPECT_FLOAT_EQ(bias[1], 5.0f - 0.01f) << name;
    for (int64_t e = 2; e < E; ++e) EXPECT_FLOAT_EQ(bias[e], 0.01f) << name << " expert " << e;
    // No forward since: no update.
    ffn->visit([](Module& m) { m.after_optimizer_step(); });
    EXPECT_FLOAT_EQ(bias[0], 5.0f - 0.01f) << name;
  }
}

TEST(MoE, BiasUpdatesBalanceTheLoad) {
  // With a skewed router (one expert's row scaled up), repeated updates spread the load.
  BlockConfig c = moe_block("shared_moe");
  c.moe_bias_update_rate = 0.02;
  SharedMoEFFN ffn(c);
  Rng rng(9);
  randomize(ffn, rng);
  float* w = ffn.router().weight()->data();
  for (int64_t i = 0; i < 8; ++i) w[3 * 8 + i] = 2.0f * std::abs(w[3 * 8 + i]);
  auto x = test::make_input("x", Shape{4, 16, 8}, rng);
  for (int64_t i = 0; i < x->numel(); ++i) x->data()[i] = std::abs(x->data()[i]);
  auto max_load = [&] {
    aux_outputs().clear();
    ffn.forward(x->tensor());
    current_graph().clear();
    double m = 0;
    for (const AuxOutputs::Metric& mt : aux_outputs().metrics()) m = std::max(m, mt.value);
    return m;
  };
  // Each "step": a training forward (its load is counted), then the hook.
  const double before = max_load();
  for (int i = 0; i < 60; ++i) {
    ffn.visit([](Module& m) { m.after_optimizer_step(); });
    max_load();
  }
  const double after = max_load();
  EXPECT_GT(before, 0.2);  // expert 3 takes most picks (balanced: 1/8)
  EXPECT_LT(after, 0.6 * before);
  EXPECT_LT(ffn.router().bias()->data()[3], 0.0f);
}

// ------------------------------------------------------------ trainer

const char* kText = "the quick brown fox jumps over the lazy dog. the lazy dog sleeps. ";

struct TrainFixture {
  std::string text;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<TextDataset> data;
  TrainConfig train;
  TrainFixture() {
    for (int i = 0; i < 40; ++i) text += kText;
    tok = make_tokenizer("char", text);
    data = std::make_unique<TextDataset>(text, *tok, 0.1);
    train.seq_len = 32;
    train.batch_size = 4;
    train.max_steps = 30;
    train.warmup_steps = 3;
    train.learning_rate = 1e-2;
    train.eval_interval = 0;
    train.log_interval = 0;
    train.threads = 1;
    train.seed = 3;
  }
  ModelConfig model(const std::string& ffn) const {
    ModelConfig m;
    m.vocab_size = tok->vocab_size();
    m.n_layers = 2;
    m.block = moe_block(ffn);
    m.block.d_model = 32;
    m.block.n_heads = 4;
    m.block.n_kv_heads = 2;
    m.block.d_ff = 64;
    m.block.moe_d_ff = 32;
    m.block.max_seq_len = 32;
    if (ffn == "latent_moe") m.block.moe_latent_size = 16;
    return m;
  }
};

class Recorder : public Callback {
 public:
  std::vector<StepMetrics> steps;
  void on_step_end(Trainer&, const StepMetrics& m) override { steps.push_back(m); }
};

double extra(const StepMetrics& m, const std::string& name) {
  for (auto& [n, v] : m.extra)
    if (n == name) return v;
  ADD_FAILURE() << "no metric " << name;
  return NAN;
}

TEST(MoE, SmallModelsLearnAndReportAuxMetrics) {
  TrainFixture f;
  for (const char* name : {"moe", "shared_moe", "latent_moe"}) {
    LanguageModel model(f.model(name));
    Rng rng(1);
    model.init_weights(rng);
    Trainer t(model, f.train, *f.data);
    Recorder rec;
    t.add_callback(&rec);
    TrainSummary s = t.train();
    ASSERT_EQ(s.status, RunStatus::kCompleted) << name << ": " << s.message;
    ASSERT_EQ(rec.steps.size(), 30u);
    double first = rec.steps[0].loss, last = 0;
    for (size_t i = 25; i < 30; ++i) last += rec.steps[i].loss / 5;
    EXPECT_LT(last, 0.7 * first) << name << ": " << first << " -> " << last;
    for (const StepMetrics& m : rec.steps) {
      const int64_t E = *f.model(name).block.n_experts;
      for (int64_t layer = 0; layer < 2; ++layer) {
        double total = 0;
        for (int64_t e = 0; e < E; ++e)
          total +=
              extra(m, "moe_load/layer" + std::to_string(layer) + "/expert" + std::to_string(e));
        EXPECT_NEAR(total, 1.0, 1e-9);
      }
      if (std::string(name) == "moe") {
        EXPECT_GT(extra(m, "moe_aux_loss"), 0.0);  // summed over the 2 layers
        EXPECT_GT(extra(m, "moe_z_loss"), 0.0);
      }
    }
    if (std::string(name) != "moe") {
      // The trainer's after_optimizer_step hook moved every layer's bias.
      for (int64_t layer = 0; layer < 2; ++layer) {
        Parameter* b = param(model, "layers." + std::to_string(layer) + ".ffn.router.expert_bias");
        double moved = 0;
        for (int64_t e = 0; e < b->numel(); ++e) moved += std::abs(b->data()[e]);
        EXPECT_GT(moved, 0.0) << name << " layer " << layer;
      }
    }
  }
}

TEST(MoE, CheckpointKeepsTheSelectionBias) {
  TrainFixture f;
  LanguageModel model(f.model("shared_moe"));
  Rng rng(2);
  model.init_weights(rng);
  Parameter* b = param(model, "layers.1.ffn.router.expert_bias");
  for (int64_t e = 0; e < b->numel(); ++e) b->data()[e] = 0.125f * float(e) - 0.3f;
  test::TempDir dir;
  save_checkpoint(dir / "ck", model, f.train, *f.tok);
  LanguageModel loaded(f.model("shared_moe"));
  load_model_weights(dir / "ck", loaded);
  Parameter* lb = param(loaded, "layers.1.ffn.router.expert_bias");
  for (int64_t e = 0; e < b->numel(); ++e) EXPECT_EQ(lb->data()[e], b->data()[e]);
  EXPECT_FALSE(lb->trainable());
}

// ------------------------------------------------------------ config

TEST(MoE, ConfigValidationAndRoundTrip) {
  auto errors_of = [](const BlockConfig& b) {
    std::string all;
    for (const std::string& e : validation_errors(b, "block")) all += e + "\n";
    return all;
  };
  BlockConfig b = moe_block("moe");
  EXPECT_EQ(errors_of(b), "");
  b.n_experts.reset();
  EXPECT_TRUE(test::contains(errors_of(b), "block.n_experts is required for ffn 'moe'"));
  b = moe_block("shared_moe");
  EXPECT_EQ(errors_of(b), "");
  b.top_k_experts = 5;  // 2 groups of 2 experts leave 4 candidates
  EXPECT_TRUE(test::contains(
      errors_of(b),
      "block.top_k_experts (5) must be <= block.moe_topk_groups * experts per group (4) for ffn "
      "'shared_moe'"));
  b = moe_block("latent_moe");
  b.moe_z_loss_coef = -1;
  b.moe_bias_update_rate = NAN;
  EXPECT_TRUE(
      test::contains(errors_of(b), "block.moe_z_loss_coef (-1) must be a finite number >= 0"));
  EXPECT_TRUE(test::contains(errors_of(b),
                             "block.moe_bias_update_rate (nan) must be a finite number >= 0"));
  b = moe_block("latent_moe");
  b.moe_latent_size.reset();
  b.d_model = 2;
  b.n_heads = 1;
  EXPECT_TRUE(
      test::contains(errors_of(b), "block.moe_latent_size must be set when block.d_model (2) < 4"));

  // Components built directly (without LanguageModel's validation) check too.
  BlockConfig no_experts = moe_block("moe");
  no_experts.n_experts.reset();
  for (const char* name : {"moe", "shared_moe", "latent_moe"})
    EXPECT_TRUE(test::contains(
        test::error_of<ConfigError>([&] { ffn_registry().create(name, no_experts); }),
        std::string("n_experts is required for ffn '") + name + "'"));

  BlockConfig r = moe_block("moe");
  r.moe_aux_loss_coef = 0.02;
  r.moe_z_loss_coef = 0.0;
  r.moe_bias_update_rate = 5e-4;
  nlohmann::json j = r;
  EXPECT_EQ(j["moe_aux_loss_coef"], 0.02);
  EXPECT_EQ(j.get<BlockConfig>(), r);
  const auto names = block_config_field_names();
  for (const char* f : {"moe_aux_loss_coef", "moe_z_loss_coef", "moe_bias_update_rate"})
    EXPECT_NE(std::find(names.begin(), names.end(), f), names.end()) << f;
  // Registry entries list each component's own fields for the composer.
  EXPECT_TRUE(ffn_registry().uses_field("moe", "moe_aux_loss_coef"));
  EXPECT_FALSE(ffn_registry().uses_field("moe", "moe_n_groups"));
  EXPECT_TRUE(ffn_registry().uses_field("shared_moe", "moe_bias_update_rate"));
  EXPECT_TRUE(ffn_registry().uses_field("latent_moe", "moe_latent_size"));
}

}  // namespace
}  // namespace bl
