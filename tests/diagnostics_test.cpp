// Training diagnostics (train/diagnostics.h) and system metrics
// (train/system_metrics.h): logged at the documented steps under the
// documented names, with values recomputed here from the parameters.
#include "train/diagnostics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <thread>

#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "tensor/rng.h"
#include "train/system_metrics.h"
#include "train/trainer.h"

namespace bl {
namespace {

TEST(Diagnostics, EffectiveRankOfKnownMatrices) {
  const int n = 8;
  std::vector<float> id(n * n, 0.0f);
  for (int i = 0; i < n; ++i) id[size_t(i * n + i)] = 1.0f;
  EXPECT_NEAR(effective_rank(id.data(), n, n), 8.0, 1e-4);
  // Rank 1: the outer product u v^T of a 6 x 10 matrix.
  std::vector<float> r1(60);
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 10; ++j) r1[size_t(i * 10 + j)] = float(i + 1) * float(j - 4.5);
  EXPECT_NEAR(effective_rank(r1.data(), 6, 10), 1.0, 1e-3);
  // Two equal singular values, the rest zero: 2.
  std::vector<float> two(5 * 7, 0.0f);
  two[0] = 3.0f;
  two[size_t(1 * 7 + 1)] = -3.0f;
  EXPECT_NEAR(effective_rank(two.data(), 5, 7), 2.0, 1e-4);
  // Singular values 3 and 1: exp(H(3/4, 1/4)).
  two[size_t(1 * 7 + 1)] = 1.0f;
  const double h = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  EXPECT_NEAR(effective_rank(two.data(), 5, 7), std::exp(h), 1e-4);
  std::vector<float> zero(12, 0.0f);
  EXPECT_EQ(effective_rank(zero.data(), 3, 4), 0.0);
}

TEST(Diagnostics, GroupsAreLayersOrTopLevelNames) {
  EXPECT_EQ(diagnostics_group("layers.3.attention.q_proj.weight"), "layers.3");
  EXPECT_EQ(diagnostics_group("layers.12.ffn.w1.weight"), "layers.12");
  EXPECT_EQ(diagnostics_group("mtp.0.proj.weight"), "mtp.0");
  EXPECT_EQ(diagnostics_group("embed_tokens.weight"), "embed_tokens");
  EXPECT_EQ(diagnostics_group("norm.weight"), "norm");
  EXPECT_EQ(diagnostics_group("lm_head.weight"), "lm_head");
  EXPECT_EQ(diagnostics_group("bias"), "bias");
}

struct TinyRun {
  std::string text;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<TextDataset> data;
  ModelConfig model;
  TrainConfig train;
  TinyRun() {
    for (int i = 0; i < 60; ++i) text += "the quick brown fox jumps over the lazy dog. ";
    tok = make_tokenizer("char", text);
    data = std::make_unique<TextDataset>(text, *tok, 0.1);
    model.vocab_size = tok->vocab_size();
    model.n_layers = 2;
    model.block.d_model = 32;
    model.block.n_heads = 4;
    model.block.d_ff = 64;
    model.block.max_seq_len = 16;
    train.seq_len = 16;
    train.batch_size = 4;
    train.max_steps = 8;
    train.warmup_steps = 1;
    train.learning_rate = 1e-2;
    train.max_grad_norm = 0.05;  // clips: the logged gradient norm is the unclipped one
    train.eval_interval = 0;
    train.eval_batches = 1;
    train.threads = 1;
  }
};

/// Recomputes every diagnostic from the parameters: snapshots weights and
/// gradients before each update, and checks the step's diag/ entries.
class Checker : public Callback {
 public:
  std::vector<int64_t> diag_steps;  // steps with any diag/ entry
  std::map<std::string, int> seen;  // diag/ names over the run
  int checked = 0;
  void on_before_update(Trainer& t, int64_t) override {
    w0_.clear();
    g_.clear();
    for (Parameter* p : params(t)) {
      w0_.emplace_back(p->data(), p->data() + p->numel());
      g_.emplace_back(p->grad(), p->grad() + p->numel());
    }
  }
  void on_step_end(Trainer& t, const StepMetrics& m) override {
    std::map<std::string, double> diag;
    for (const auto& [name, v] : m.extra)
      if (name.rfind("diag/", 0) == 0) diag[name] = v;
    if (diag.empty()) return;
    diag_steps.push_back(m.step);
    for (auto& [name, v] : diag) ++seen[name];
    // Per group: sums of squares of gradient, weights after and before, delta.
    std::map<std::string, std::array<double, 4>> sums;
    std::vector<Parameter*> ps = params(t);
    for (size_t k = 0; k < ps.size(); ++k) {
      auto& s = sums[diagnostics_group(ps[k]->name())];
      for (int64_t i = 0; i < ps[k]->numel(); ++i) {
        const double g = g_[k][size_t(i)], w = ps[k]->data()[i], w0 = w0_[k][size_t(i)];
        s[0] += g * g;
        s[1] += w * w;
        s[2] += w0 * w0;
        s[3] += (w - w0) * (w - w0);
      }
      if (ps[k]->shape().rank == 2) {
        std::string n = ps[k]->name();
        if (n.size() > 7 && n.substr(n.size() - 7) == ".weight") n.resize(n.size() - 7);
        const double er = effective_rank(ps[k]->data(), ps[k]->shape()[0], ps[k]->shape()[1]);
        ASSERT_TRUE(diag.count("diag/eff_rank/" + n)) << n;
        EXPECT_NEAR(diag["diag/eff_rank/" + n], er, 1e-6 * er) << n;
        EXPECT_GT(er, 1.0) << n;
      }
    }
    for (auto& [g, s] : sums) {
      ASSERT_TRUE(diag.count("diag/grad_norm/" + g)) << g;
      EXPECT_NEAR(diag["diag/grad_norm/" + g], std::sqrt(s[0]), 1e-9 + 1e-6 * std::sqrt(s[0]));
      EXPECT_NEAR(diag["diag/weight_norm/" + g], std::sqrt(s[1]), 1e-6 * std::sqrt(s[1]));
      const double ratio = std::sqrt(s[3]) / std::sqrt(s[2]);
      EXPECT_NEAR(diag["diag/update_ratio/" + g], ratio, 1e-4 * ratio) << g;
      EXPECT_GT(ratio, 0.0) << g;
    }
    ++checked;
  }

 private:
  static std::vector<Parameter*> params(Trainer& t) {
    std::vector<Parameter*> out;
    for (Parameter* p : t.model().parameters())
      if (p->trainable() && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    return out;
  }
  std::vector<std::vector<float>> w0_, g_;
};

TEST(Diagnostics, LoggedAtTheIntervalWithValuesFromTheParameters) {
  TinyRun s;
  LanguageModel model(s.model);
  Rng rng(5);
  model.init_weights(rng);
  Trainer trainer(model, s.train, *s.data);
  Diagnostics diag(3);
  Checker check;
  trainer.add_callback(&diag);
  trainer.add_callback(&check);
  trainer.train();
  EXPECT_EQ(check.diag_steps, (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(check.checked, 2);
  // The documented names, each at both diagnostics steps.
  for (const char* n :
       {"diag/grad_norm/layers.0", "diag/grad_norm/layers.1", "diag/grad_norm/embed_tokens",
        "diag/weight_norm/layers.1", "diag/update_ratio/layers.0", "diag/update_ratio/norm",
        "diag/eff_rank/layers.0.attention.q_proj", "diag/eff_rank/embed_tokens"}) {
    ASSERT_TRUE(check.seen.count(n)) << n;
    EXPECT_EQ(check.seen[n], 2) << n;
  }
  for (auto& [name, count] : check.seen) EXPECT_EQ(count, 2) << name;
}

TEST(Diagnostics, IntervalZeroLogsNothing) {
  TinyRun s;
  LanguageModel model(s.model);
  Rng rng(5);
  model.init_weights(rng);
  Trainer trainer(model, s.train, *s.data);
  Diagnostics diag(0);
  Checker check;
  trainer.add_callback(&diag);
  trainer.add_callback(&check);
  trainer.train();
  EXPECT_TRUE(check.diag_steps.empty());
  EXPECT_TRUE(check.seen.empty());
}

/// Collects the sys/ entries of every step.
class SysRecorder : public Callback {
 public:
  std::vector<std::map<std::string, double>> samples;
  std::vector<int64_t> steps;
  void on_step_end(Trainer&, const StepMetrics& m) override {
    std::map<std::string, double> s;
    for (const auto& [name, v] : m.extra)
      if (name.rfind("sys/", 0) == 0) s[name] = v;
    if (s.empty()) return;
    samples.push_back(s);
    steps.push_back(m.step);
  }
};

TEST(SystemMetrics, SampledAtFirstAndLastStepAndPlausible) {
  const ProcessSample p = sample_process();
  EXPECT_GT(p.rss_mb, 1.0);
  EXPECT_GE(p.threads, 1);
  EXPECT_GT(p.cpu_s, 0.0);

  TinyRun s;
  s.train.max_steps = 6;
  s.train.threads = 2;
  LanguageModel model(s.model);
  Rng rng(5);
  model.init_weights(rng);
  Trainer trainer(model, s.train, *s.data);
  SystemMetrics sys(3600.0);  // a period longer than the run: first and last step only
  SysRecorder rec;
  trainer.add_callback(&sys);
  trainer.add_callback(&rec);
  trainer.train();
  EXPECT_EQ(rec.steps, (std::vector<int64_t>{0, 5}));
  const double cores = double(std::thread::hardware_concurrency());
  for (auto& m : rec.samples) {
    ASSERT_EQ(m.size(), 3u);
    EXPECT_GT(m["sys/rss_mb"], 1.0);
    EXPECT_GE(m["sys/threads"], 1.0);
    EXPECT_GE(m["sys/cpu_percent"], 0.0);
    // At most every core of the machine busy (and some rounding slack).
    EXPECT_LE(m["sys/cpu_percent"], 100.0 * std::max(cores, m["sys/threads"]) + 10.0);
  }
}

}  // namespace
}  // namespace bl
