// LoRA and QLoRA: a fresh adapter changes no output bit, gradients of A and B
// match finite differences (single and fused QKV), the frozen base gets no
// gradient memory at all, merging equals the unmerged model, target selection,
// parameter counts, and QLoRA training over a quantized base with its measured
// memory saving against full fine-tuning.
#include "lora/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "component_checks.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "gradcheck.h"
#include "lora/lora_ops.h"
#include "ops/cross_entropy.h"
#include "peft_test_util.h"
#include "quant/quantize.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace bl {
namespace {

void randomize_lora_b(Module& model, uint64_t seed, float std = 0.05f) {
  Rng rng(seed);
  for (auto& [name, p] : lora_parameters(model))
    if (name.find("lora_B") != std::string::npos) p->init_normal(rng, std);
}

TEST(LoRA, FreshAdapterChangesNoOutputBit) {
  for (auto targets : {std::vector<std::string>{"q", "v"}, std::vector<std::string>{"all"}}) {
    LanguageModel model(test::peft_model_config());
    test::init_model(model);
    const std::vector<int32_t> ids = test::token_ids(2 * 7, 40);
    const std::vector<float> before = test::logits_of(model, ids, 2, 7);
    apply_lora(model, 4, 8.0f, targets);
    const std::vector<float> after = test::logits_of(model, ids, 2, 7);
    ASSERT_EQ(before.size(), after.size());
    EXPECT_EQ(std::memcmp(before.data(), after.data(), sizeof(float) * before.size()), 0);
  }
}

// A ~ N(0, 2 / in) (kaiming_normal_, fan_in, gain sqrt 2); B = 0.
TEST(LoRA, InitIsKaimingNormalAAndZeroB) {
  Linear l(256, 128, true);
  Rng rng(1);
  l.add_lora(16, 32.0f, rng);
  const LoraAdapter* a = l.lora();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->a->shape(), (Shape{16, 256}));
  EXPECT_EQ(a->b->shape(), (Shape{128, 16}));
  EXPECT_FLOAT_EQ(a->scaling(), 2.0f);
  double s = 0, s2 = 0;
  const int64_t n = a->a->numel();
  for (int64_t i = 0; i < n; ++i) {
    s += a->a->data()[i];
    s2 += a->a->data()[i] * a->a->data()[i];
  }
  const double std = std::sqrt(s2 / n), expect = std::sqrt(2.0 / 256);
  EXPECT_NEAR(s / n, 0.0, 4 * expect / std::sqrt(double(n)));
  EXPECT_NEAR(std, expect, 0.05 * expect);
  for (int64_t i = 0; i < a->b->numel(); ++i) EXPECT_EQ(a->b->data()[i], 0.0f);
  EXPECT_FALSE(l.weight->trainable());
  EXPECT_FALSE(l.bias->trainable());
  EXPECT_TRUE(a->a->trainable() && a->b->trainable());
  EXPECT_THROW(l.add_lora(4, 8.0f, rng), std::logic_error);
  Linear m(8, 8, false);
  EXPECT_THROW(m.add_lora(9, 8.0f, rng), std::invalid_argument);
}

// y = x Wᵀ + b + (alpha / r) (x Aᵀ) Bᵀ, checked against a hand computation.
TEST(LoRA, ForwardMatchesFormula) {
  Linear l(6, 5, true);
  Rng rng(2);
  for (Parameter* p : l.parameters()) p->init_normal(rng, 0.5f);
  l.add_lora(3, 6.0f, rng);
  l.lora()->b->init_normal(rng, 0.5f);
  auto x = test::make_input("x", Shape{4, 6}, rng);
  NoGradGuard ng;
  Tensor y = l.forward(x->tensor());
  const float* W = l.weight->data();
  const float* A = l.lora()->a->data();
  const float* B = l.lora()->b->data();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t o = 0; o < 5; ++o) {
      double ref = l.bias->data()[o];
      for (int64_t k = 0; k < 6; ++k) ref += x->data()[i * 6 + k] * W[o * 6 + k];
      for (int64_t r = 0; r < 3; ++r) {
        double h = 0;
        for (int64_t k = 0; k < 6; ++k) h += x->data()[i * 6 + k] * A[r * 6 + k];
        ref += 2.0 * h * B[o * 3 + r];
      }
      EXPECT_NEAR(y.data()[i * 5 + o], ref, 1e-5);
    }
  current_graph().clear();
}

TEST(LoRA, GradientOfAAndBMatchesFiniteDifferences) {
  for (bool quantized : {false, true}) {
    Linear l(64, 12, true);
    Rng rng(3);
    for (Parameter* p : l.parameters()) p->init_normal(rng, 0.3f);
    if (quantized) l.quantize(QuantSpec{QuantMode::kNF4, 4, 32});
    l.add_lora(4, 8.0f, rng);
    l.lora()->b->init_normal(rng, 0.3f);
    auto x = test::make_input("x", Shape{2, 3, 64}, rng);
    EXPECT_TRUE(test::grad_check([&] { return l.forward(x->tensor()); },
                                 {x.get(), l.lora()->a, l.lora()->b}))
        << "quantized " << quantized;
  }
}

// The fused down projection (one GEMM for q, k and v) and its backward.
TEST(LoRA, FusedDownProjectionGradient) {
  Rng rng(4);
  auto x = test::make_input("x", Shape{2, 3, 10}, rng);
  auto a1 = test::make_input("a1", Shape{2, 10}, rng);
  auto a2 = test::make_input("a2", Shape{3, 10}, rng);
  auto a3 = test::make_input("a3", Shape{1, 10}, rng);
  auto base = test::make_input("base", Shape{2, 3, 7}, rng);
  auto b2 = test::make_input("b2", Shape{7, 3}, rng);
  EXPECT_TRUE(test::grad_check(
      [&] {
        Tensor h = lora_down(x->tensor(), {a1->tensor(), a2->tensor(), a3->tensor()});
        return lora_up(base->tensor(), h, 2, b2->tensor(), 0.7f);
      },
      {x.get(), a1.get(), a2.get(), a3.get(), base.get(), b2.get()}));
}

// Whole-model loss gradient w.r.t. the adapters, q/k/v fused path included.
TEST(LoRA, ModelGradientWithFusedQKV) {
  LanguageModel model(test::peft_model_config(true, 64));
  test::init_model(model, 5);
  apply_lora(model, 2, 4.0f, {"q", "k", "v", "down"});
  randomize_lora_b(model, 6, 0.3f);
  std::vector<Parameter*> ps;
  for (auto& [n, p] : lora_parameters(model)) ps.push_back(p);
  const std::vector<int32_t> ids = test::token_ids(8, 40), tg = test::token_ids(8, 40, 1);
  test::GradCheckOptions o;
  o.max_checks_per_input = 6;
  EXPECT_TRUE(test::grad_check(
      [&] {
        return model.loss(Tokens{ids.data(), Shape{2, 4}}, Tokens{tg.data(), Shape{2, 4}});
      },
      ps, o));
}

// The base is frozen: after backward no base parameter has (or touched) a
// gradient buffer, and the adapters do.
TEST(LoRA, BaseGetsNoGradientMemory) {
  LanguageModel model(test::peft_model_config());
  test::init_model(model);
  apply_lora(model, 4, 8.0f, {"q", "k", "v", "o"});
  randomize_lora_b(model, 1);
  const std::vector<int32_t> ids = test::token_ids(12, 40), tg = test::token_ids(12, 40, 2);
  Graph& g = current_graph();
  Tensor loss = model.loss(Tokens{ids.data(), Shape{2, 6}}, Tokens{tg.data(), Shape{2, 6}});
  g.backward(loss);
  g.clear();
  int lora = 0;
  for (auto& [name, p] : model.named_parameters()) {
    if (name.find("lora_") != std::string::npos) {
      ++lora;
      ASSERT_NE(p->grad(), nullptr) << name;
      double s = 0;
      for (int64_t i = 0; i < p->numel(); ++i) s += std::abs(p->grad()[i]);
      EXPECT_GT(s, 0.0) << name;
    } else {
      EXPECT_FALSE(p->trainable()) << name;
      EXPECT_EQ(p->grad(), nullptr) << name;
      EXPECT_EQ(p->tensor().grad(), nullptr) << name;
    }
  }
  EXPECT_EQ(lora, 2 * 2 * 4);
}

// Hand count: rank r adds r * (in + out) per adapted Linear.
TEST(LoRA, ParameterCounts) {
  LanguageModel model(test::peft_model_config());
  const int64_t total = model.num_parameters();
  const std::vector<std::string> paths = apply_lora(model, 8, 16.0f);  // default q, v
  ASSERT_EQ(paths,
            (std::vector<std::string>{"layers.0.attention.q_proj", "layers.0.attention.v_proj",
                                      "layers.1.attention.q_proj", "layers.1.attention.v_proj"}));
  // q: 64 -> 64, v: 64 -> 2 kv heads * 16 = 32.
  const int64_t lora = 2 * (8 * (64 + 64) + 8 * (64 + 32));
  EXPECT_EQ(trainable_parameter_count(model), lora);
  EXPECT_EQ(total_parameter_count(model), total + lora);
  auto lp = lora_parameters(model);
  ASSERT_EQ(lp.size(), 8u);
  EXPECT_EQ(lp[0].first, "layers.0.attention.q_proj.lora_A.weight");
  EXPECT_EQ(lp[0].second->name(), lp[0].first);
  EXPECT_EQ(lp[1].first, "layers.0.attention.q_proj.lora_B.weight");
}

TEST(LoRA, TargetsByRoleNameAndPattern) {
  LanguageModel model(test::peft_model_config());
  EXPECT_EQ(lora_target_paths(model, {"attention"}).size(), 8u);
  EXPECT_EQ(lora_target_paths(model, {"mlp"}).size(), 6u);
  EXPECT_EQ(lora_target_paths(model, {"gate", "up_proj"}).size(), 4u);
  EXPECT_EQ(lora_target_paths(model, {"all"}).size(), 14u);
  EXPECT_EQ(lora_target_paths(model, {"layers.1.*"}).size(), 7u);
  EXPECT_EQ(lora_target_paths(model, {"*.ffn.*"}).size(), 6u);
  try {
    lora_target_paths(model, {"qkv"});
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown LoRA target 'qkv'"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("q (q_proj)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lora_target_paths(model, {"layers.7.*"}), std::invalid_argument);
  apply_lora(model, 2, 4.0f, {"q"});
  EXPECT_THROW(apply_lora(model, 2, 4.0f, {"q"}), std::invalid_argument);
}

// merge (to_linear) gives the same outputs as the unmerged adapters, with the
// fused QKV path on one side and a plain model on the other.
TEST(LoRA, MergeEqualsUnmerged) {
  for (bool quantized : {false, true}) {
    LanguageModel model(test::peft_model_config());
    test::init_model(model, 7);
    if (quantized) quantize_model(model, 4, 64, "affine");
    apply_lora(model, 4, 8.0f, {"q", "k", "v", "up"});
    randomize_lora_b(model, 8, 0.2f);
    const std::vector<int32_t> ids = test::token_ids(2 * 9, 40);
    const std::vector<float> unmerged = test::logits_of(model, ids, 2, 9);
    merge_lora(model);
    EXPECT_TRUE(lora_parameters(model).empty());
    EXPECT_EQ(
        trainable_parameter_count(model),
        model.num_parameters() - (quantized ? model.quantized_elements() : 0) - [&] {
          int64_t n = 0;  // still-quantized layers
          for (auto& [p, l] : named_linears(model)) n += l->quantized_elements();
          return n;
        }());
    EXPECT_LT(test::max_abs_diff(test::logits_of(model, ids, 2, 9), unmerged), 1e-4)
        << "quantized " << quantized;
    for (auto& [path, l] : named_linears(model)) {
      if (path.find("q_proj") != std::string::npos || path.find("up_proj") != std::string::npos) {
        EXPECT_FALSE(l->quantized()) << path;  // merged into a float weight
      }
    }
  }
}

// Cached decoding with adapters (fused QKV) equals the full forward pass.
TEST(LoRA, CachedDecodingMatchesFullForward) {
  LanguageModel model(test::peft_model_config());
  test::init_model(model, 9);
  apply_lora(model, 4, 8.0f, {"q", "k", "v", "o"});
  randomize_lora_b(model, 10, 0.2f);
  const int64_t T = 8;
  const double err = test::cached_decoding_error(model, T, test::one_at_a_time(T), T);
  EXPECT_LT(err, 1e-4);
}

// Bytes a training step holds for weights, gradients and AdamW state, measured
// from the buffers that exist (frozen parameters free their gradient buffer).
int64_t training_bytes(LanguageModel& model, const Optimizer& opt) {
  int64_t grads = 0;
  for (Parameter* p : model.parameters())
    if (p->grad()) grads += 4 * p->numel();
  return model_weight_bytes(model) + grads + 4 * opt.state_floats();
}

std::vector<Parameter*> trainable_params(LanguageModel& m) {  // as the Trainer builds its list
  std::vector<Parameter*> out;
  for (Parameter* p : m.parameters())
    if (p->trainable() && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  return out;
}

double train_steps(LanguageModel& model, Optimizer& opt, int steps, double* first) {
  const std::vector<int32_t> ids = test::token_ids(4 * 16, 40, 3);
  std::vector<int32_t> tg(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    tg[i] = int32_t((ids[i] * 5 + 1) % 40);  // a fixed map to learn
  Graph& g = current_graph();
  double last = 0;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor loss = model.loss(Tokens{ids.data(), Shape{4, 16}}, Tokens{tg.data(), Shape{4, 16}});
    last = loss.item();
    if (s == 0) *first = last;
    g.backward(loss);
    g.clear();
    opt.step(3e-2f);
  }
  return last;
}

// QLoRA: the base stays quantized (bit-identical codes), only A and B train and
// the loss falls; memory against full fine-tuning of the float model, measured.
TEST(QLoRA, TrainsAdaptersOverAQuantizedBaseAndSavesMemory) {
  ModelConfig cfg = test::peft_model_config(true, 128);
  cfg.block.n_heads = 4;
  cfg.block.d_ff = 256;
  int64_t full_bytes = 0;
  {
    LanguageModel full(cfg);
    test::init_model(full, 11);
    OptimizerOptions oo;
    auto opt = make_optimizer("adamw", trainable_params(full), oo);
    double first = 0;
    train_steps(full, *opt, 1, &first);
    full_bytes = training_bytes(full, *opt);
    EXPECT_EQ(full_bytes, 4 * full.num_parameters() * 4);  // weights + grads + 2 AdamW moments
  }
  for (const char* mode : {"nf4", "affine"}) {
    LanguageModel model(cfg);
    test::init_model(model, 11);
    quantize_model(model, 4, 64, mode);
    const auto* q = named_linears(model)[0].second->quantized_weight();
    const std::vector<float> codes_before = q->dequantize_all();
    apply_lora(model, 8, 16.0f, {"q", "k", "v", "o", "gate", "up", "down"});
    std::vector<Parameter*> params = trainable_params(model);
    EXPECT_EQ(params.size(), lora_parameters(model).size());  // only A and B train
    auto opt = make_optimizer("adamw", params, OptimizerOptions{});
    double first = 0;
    const double last = train_steps(model, *opt, 40, &first);
    EXPECT_LT(last, 0.85 * first) << mode << ": " << first << " -> " << last;
    EXPECT_EQ(named_linears(model)[0].second->quantized_weight(), q);
    EXPECT_EQ(q->dequantize_all(), codes_before);
    const int64_t qlora_bytes = training_bytes(model, *opt);
    const double ratio = double(qlora_bytes) / double(full_bytes);
    std::printf(
        "QLoRA %s: loss %.3f -> %.3f; weights+grads+AdamW %lld bytes vs full fine-tuning %lld "
        "(%.3f)\n",
        mode, first, last, (long long)qlora_bytes, (long long)full_bytes, ratio);
    EXPECT_LT(ratio, 0.16) << mode;  // measured 0.145 (nf4), 0.148 (affine4)
  }
}

// The real Trainer over a QLoRA model: its optimizer holds exactly the adapter
// parameters (state for nothing else) and the training loss falls, on one
// thread and on two (data-parallel replicas of the adapters only).
class QLoRATrainer : public ::testing::TestWithParam<int> {};

TEST_P(QLoRATrainer, OptimizesOnlyTheAdapters) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  std::unique_ptr<Tokenizer> tok = make_tokenizer("char", text);
  TextDataset data(text, *tok);
  ModelConfig cfg = test::peft_model_config(true, 64);
  cfg.vocab_size = tok->vocab_size();
  LanguageModel model(cfg);
  test::init_model(model, 2);
  quantize_model(model, 4, 64, "nf4");
  apply_lora(model, 4, 8.0f, {"all"});
  TrainConfig tc;
  tc.max_steps = 30;
  tc.warmup_steps = 0;
  tc.batch_size = 4;
  tc.seq_len = 16;
  tc.learning_rate = 1e-2;
  tc.eval_interval = 0;
  tc.eval_batches = 2;
  tc.checkpoint_interval = 0;
  tc.threads = GetParam();
  Trainer trainer(model, tc, data);
  const auto lp = lora_parameters(model);
  ASSERT_EQ(trainer.optimizer().params().size(), lp.size());
  for (size_t i = 0; i < lp.size(); ++i) EXPECT_EQ(trainer.optimizer().params()[i], lp[i].second);
  EXPECT_EQ(trainer.optimizer().state_floats(), 2 * trainable_parameter_count(model));
  double first = 0;
  struct First : Callback {
    double* first;
    void on_step_end(Trainer&, const StepMetrics& m) override {
      if (m.step == 0) *first = m.loss;
    }
  } cb;
  cb.first = &first;
  trainer.add_callback(&cb);
  const TrainSummary sum = trainer.train();
  EXPECT_EQ(sum.status, RunStatus::kCompleted) << sum.message;
  EXPECT_EQ(trainer.replicas(), GetParam());
  EXPECT_LT(sum.final_train_loss, 0.9 * first) << first << " -> " << sum.final_train_loss;
}

INSTANTIATE_TEST_SUITE_P(Threads, QLoRATrainer, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "threads"; });

}  // namespace
}  // namespace bl
