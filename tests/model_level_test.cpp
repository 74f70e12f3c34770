// Model-level features: multi-token prediction heads (DeepSeek V3 / lmxlab
// MTPHead) and μP (init, per-group learning rates, readout scale).
#include <gtest/gtest.h>

#include <cmath>

#include "core/aux_outputs.h"
#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "gradcheck.h"
#include "tensor/graph.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace bl {
namespace {

ModelConfig small_model() {
  ModelConfig m;
  m.vocab_size = 11;
  m.n_layers = 2;
  m.block.attention = "gqa";
  m.block.ffn = "gated";
  m.block.norm = "rms_norm";
  m.block.position = "rope";
  m.block.d_model = 8;
  m.block.n_heads = 2;
  m.block.n_kv_heads = 1;
  m.block.d_ff = 12;
  m.block.bias = false;
  m.block.max_seq_len = 16;
  return m;
}

void randomize(Module& m, Rng& rng) {
  for (Parameter* p : m.parameters()) {
    p->init_normal(rng, 0.3f);
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  }
}

const std::vector<int32_t> kIds{1, 4, 2, 9, 0, 3, 3, 7, 10, 5, 6, 2};
const std::vector<int32_t> kTargets{4, 2, 9, 0, 3, 1, 7, 10, 5, 6, 2, 8};

TEST(MultiTokenPrediction, ParameterCountIsTwoNormsProjectionAndABlock) {
  ModelConfig cfg = small_model();
  LanguageModel base(cfg);
  cfg.mtp_n_predict = 2;
  LanguageModel mtp(cfg);
  ASSERT_EQ(mtp.n_mtp_heads(), 2);
  // Per head: 2 RMSNorm weights (8 each), proj 16 -> 8 without bias, one block
  // identical to a trunk block.
  const int64_t per_head = 2 * 8 + 16 * 8 + base.block(0).num_parameters();
  EXPECT_EQ(mtp.num_parameters() - base.num_parameters(), 2 * per_head);
  EXPECT_EQ(mtp.mtp_head(0).num_parameters(), per_head);
  // Training FLOPs grow by the heads' weights, mixing and an extra LM head pass each.
  const double extra = mtp.flops_per_token(16) - base.flops_per_token(16);
  const double per_head_flops = 6.0 * double(per_head) + 6.0 * 11 * 8 + 6.0 * 8 +
                                3.0 * base.block(0).attention().mixing_flops_per_token(16);
  EXPECT_NEAR(extra, 2 * per_head_flops, 1e-6);
}

TEST(MultiTokenPrediction, LossGradientMatchesFiniteDifferences) {
  ModelConfig cfg = small_model();
  cfg.mtp_n_predict = 2;
  cfg.mtp_lambda = 0.5;
  LanguageModel model(cfg);
  Rng rng(5);
  randomize(model, rng);
  Tokens x{kIds.data(), Shape{2, 6}}, y{kTargets.data(), Shape{2, 6}};
  EXPECT_TRUE(test::grad_check([&] { return model.loss(x, y, true); }, model.parameters()));
}

TEST(MultiTokenPrediction, ObjectiveIsMainLossPlusLambdaTimesMeanDepthLoss) {
  ModelConfig cfg = small_model();
  cfg.mtp_n_predict = 2;
  cfg.mtp_lambda = 0.3;
  LanguageModel model(cfg);
  Rng rng(6);
  randomize(model, rng);
  Tokens x{kIds.data(), Shape{2, 6}}, y{kTargets.data(), Shape{2, 6}};
  NoGradGuard ng;
  const double total = model.loss(x, y, true).item();
  double d1 = -1, d2 = -1, mtp = -1;
  for (const auto& m : aux_outputs().metrics()) {
    if (m.name == "mtp_loss/depth1") d1 = m.value;
    if (m.name == "mtp_loss/depth2") d2 = m.value;
  }
  for (const auto& l : aux_outputs().losses())
    if (l.name == "mtp_loss") mtp = l.value.item();
  ASSERT_GT(d1, 0);
  ASSERT_GT(d2, 0);
  EXPECT_NEAR(mtp, (d1 + d2) / 2, 1e-5);
  EXPECT_NEAR(total, model.lm_loss() + 0.3 * mtp, 1e-5);
  // The main loss equals the plain cross-entropy of forward().
  const double lm = model.lm_loss();
  current_graph().clear();
  model.loss(x, y, false);
  EXPECT_NEAR(model.lm_loss(), lm, 1e-6);
  EXPECT_TRUE(aux_outputs().losses().empty()) << "evaluation must not run the MTP heads";
  current_graph().clear();
}

// Depth 1 at position i predicts targets[i + 1] from the embedding of
// targets[i]: changing the last target changes only depth 1's loss at the
// position before it, and never the main loss.
TEST(MultiTokenPrediction, DepthOneSeesTheNextTargetsEmbedding) {
  ModelConfig cfg = small_model();
  cfg.mtp_n_predict = 1;
  LanguageModel model(cfg);
  Rng rng(8);
  randomize(model, rng);
  NoGradGuard ng;
  std::vector<int32_t> y = kTargets;
  auto depth1 = [&] {
    model.loss(Tokens{kIds.data(), Shape{2, 6}}, Tokens{y.data(), Shape{2, 6}}, true);
    double v = aux_outputs().metrics()[0].value;
    current_graph().clear();
    return std::make_pair(model.lm_loss(), v);
  };
  auto a = depth1();
  y[5] = (y[5] + 3) % 11;  // the last target of row 0: depth 1 predicts it at position 4
  auto b = depth1();
  EXPECT_NE(a.first, b.first);  // the main loss sees it as a target too
  EXPECT_NE(a.second, b.second);
  y = kTargets;
  y[0] = (y[0] + 3) % 11;  // the first target: main loss (position 0) and depth 1's input
  auto c = depth1();
  EXPECT_NE(a.second, c.second);
}

TEST(MultiTokenPrediction, TrainerReportsMtpLossAndLearns) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "abcabdabe the cat sat on the mat. ";
  auto tok = make_tokenizer("char", text);
  TextDataset data(text, *tok, 0.1);
  ModelConfig cfg = small_model();
  cfg.vocab_size = tok->vocab_size();
  cfg.block.d_model = 16;
  cfg.mtp_n_predict = 2;
  LanguageModel model(cfg);
  Rng rng(1);
  model.init_weights(rng);
  TrainConfig tc;
  tc.seq_len = 16;
  tc.batch_size = 4;
  tc.max_steps = 40;
  tc.warmup_steps = 2;
  tc.learning_rate = 1e-2;
  tc.eval_interval = 0;
  tc.threads = 1;
  Trainer trainer(model, tc, data);
  struct Rec : Callback {
    std::vector<StepMetrics> steps;
    void on_step_end(Trainer&, const StepMetrics& m) override { steps.push_back(m); }
  } rec;
  trainer.add_callback(&rec);
  trainer.train();
  ASSERT_EQ(rec.steps.size(), 40u);
  auto value = [](const StepMetrics& m, const std::string& name) {
    for (auto& [n, v] : m.extra)
      if (n == name) return v;
    return -1.0;
  };
  for (const char* name : {"mtp_loss", "mtp_loss/depth1", "mtp_loss/depth2"})
    EXPECT_GT(value(rec.steps.front(), name), 0) << name;
  EXPECT_LT(value(rec.steps.back(), "mtp_loss"), 0.8 * value(rec.steps.front(), "mtp_loss"));
  EXPECT_LT(rec.steps.back().loss, 0.8 * rec.steps.front().loss);
}

ModelConfig mup_model(int64_t d_model, int64_t base) {
  ModelConfig m = small_model();
  m.block.d_model = d_model;
  m.block.n_heads = 4;
  m.block.n_kv_heads = 2;
  m.block.d_ff = 4 * d_model;
  m.block.mup = true;
  m.tie_embeddings = false;
  m.mup_base_width = base;
  return m;
}

TEST(MuP, HiddenMatricesGetScaledLearningRateAndInit) {
  LanguageModel model(mup_model(256, 64));  // width_mult 4
  Rng rng(2);
  model.init_weights(rng);
  int hidden = 0;
  for (auto& [name, p] : model.named_parameters()) {
    const bool is_hidden = name.rfind("layers.", 0) == 0 && p->shape().rank == 2;
    EXPECT_FLOAT_EQ(p->lr_scale(), is_hidden ? 0.25f : 1.0f) << name;
    if (!is_hidden) continue;
    ++hidden;
    double ss = 0;
    for (int64_t i = 0; i < p->numel(); ++i) ss += double(p->data()[i]) * p->data()[i];
    const double std = std::sqrt(ss / double(p->numel()));
    const bool residual = p->init_kind() == Init::kResidualNormal;
    const double expect = (residual ? 0.02 / 2.0 : 0.02) / 2.0;  // / sqrt(2 n_layers), / sqrt(4)
    EXPECT_NEAR(std, expect, 0.08 * expect) << name;
  }
  EXPECT_EQ(hidden, 2 * 7);  // q k v o gate up down per layer
  // Embedding and readout keep the base init.
  Parameter* embed = model.named_parameters().front().second;
  double ss = 0;
  for (int64_t i = 0; i < embed->numel(); ++i) ss += double(embed->data()[i]) * embed->data()[i];
  EXPECT_NEAR(std::sqrt(ss / double(embed->numel())), 0.02, 0.004);
}

TEST(MuP, BaseWidthEqualToWidthIsStandardParameterization) {
  ModelConfig sp = mup_model(32, 32);
  sp.mup_base_width.reset();
  LanguageModel a(mup_model(32, 32)), b(sp);
  Rng r1(4), r2(4);
  a.init_weights(r1);
  b.init_weights(r2);
  auto pa = a.parameters(), pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i]->lr_scale(), 1.0f);
    for (int64_t j = 0; j < pa[i]->numel(); ++j) ASSERT_EQ(pa[i]->data()[j], pb[i]->data()[j]);
  }
}

TEST(MuP, OptimizerAppliesEachParametersLearningRateScale) {
  Parameter w("w", Shape{2, 2}), v("v", Shape{2});
  w.fill(1.0f);
  v.fill(1.0f);
  w.set_lr_scale(0.25f);
  OptimizerOptions o;
  o.weight_decay = 0;
  o.momentum = 0;
  auto sgd = make_optimizer("sgd", {&w, &v}, o);
  w.zero_grad();
  v.zero_grad();
  for (int i = 0; i < 4; ++i) w.grad()[i] = 1.0f;
  for (int i = 0; i < 2; ++i) v.grad()[i] = 1.0f;
  sgd->step(0.1f);
  EXPECT_FLOAT_EQ(w.data()[0], 1.0f - 0.025f);
  EXPECT_FLOAT_EQ(v.data()[0], 1.0f - 0.1f);
}

TEST(MuP, LogitsAreScaledByInverseWidthMultiplier) {
  ModelConfig cfg = mup_model(64, 16);
  LanguageModel a(cfg);
  cfg.mup_base_width.reset();
  LanguageModel b(cfg);
  Rng r(9);
  a.init_weights(r);
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    std::copy(pa[i]->data(), pa[i]->data() + pa[i]->numel(), pb[i]->data());
  NoGradGuard ng;
  Tensor la = a.forward(Tokens{kIds.data(), Shape{2, 6}});
  std::vector<float> va(la.data(), la.data() + la.numel());
  current_graph().clear();
  Tensor lb = b.forward(Tokens{kIds.data(), Shape{2, 6}});
  for (int64_t i = 0; i < lb.numel(); ++i) ASSERT_NEAR(va[size_t(i)], lb.data()[i] / 4.0f, 1e-5);
  current_graph().clear();
}

}  // namespace
}  // namespace bl
