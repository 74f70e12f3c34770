// The training loop's contract: learning on a tiny model, stop within one
// step, pause / single step / resume from another thread, early stopping,
// divergence detection, gradient accumulation, and sampling options.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "generate/sampler.h"
#include "tensor/graph.h"
#include "train/trainer.h"

namespace bl {
namespace {

const char* kText =
    "the quick brown fox jumps over the lazy dog. the lazy dog sleeps. the quick fox runs. ";

struct Fixture {
  std::string text;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<TextDataset> data;
  ModelConfig model;
  TrainConfig train;
  Fixture() {
    for (int i = 0; i < 40; ++i) text += kText;
    tok = make_tokenizer("char", text);
    data = std::make_unique<TextDataset>(text, *tok, 0.1);
    model.vocab_size = tok->vocab_size();
    model.n_layers = 2;
    model.block.attention = "gqa";
    model.block.n_heads = 4;
    model.block.n_kv_heads = 2;
    model.block.d_model = 32;
    model.block.d_ff = 64;
    model.block.position = "rope";
    model.block.norm = "rms_norm";
    model.block.ffn = "gated";
    model.block.max_seq_len = 32;
    train.seq_len = 32;
    train.batch_size = 4;
    train.max_steps = 60;
    train.warmup_steps = 5;
    train.learning_rate = 3e-3;
    train.eval_interval = 20;
    train.eval_batches = 2;
    train.log_interval = 0;
    train.threads = 1;
    train.seed = 3;
  }
  std::unique_ptr<LanguageModel> make_model() {
    auto m = std::make_unique<LanguageModel>(model);
    Rng rng(uint64_t(train.seed));
    m->init_weights(rng);
    return m;
  }
};

class Recorder : public Callback {
 public:
  std::vector<StepMetrics> steps;
  std::function<void(Trainer&, const StepMetrics&)> hook;
  void on_step_end(Trainer& t, const StepMetrics& m) override {
    steps.push_back(m);
    if (hook) hook(t, m);
  }
};

TEST(Trainer, LearnsAndReportsEveryMetric) {
  Fixture f;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  Recorder rec;
  t.add_callback(&rec);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kCompleted);
  EXPECT_EQ(s.steps, 60);
  ASSERT_EQ(rec.steps.size(), 60u);
  // ln(vocab) at the start; a repetitive corpus is learned quickly.
  EXPECT_NEAR(rec.steps[0].loss, std::log(double(f.tok->vocab_size())), 0.3);
  EXPECT_LT(s.final_train_loss, 0.6 * rec.steps[0].loss);
  ASSERT_TRUE(s.val_loss.has_value());
  EXPECT_LT(*s.val_loss, 0.6 * rec.steps[0].loss);
  int evals = 0;
  for (auto& m : rec.steps) {
    EXPECT_GT(m.grad_norm, 0);
    EXPECT_GT(m.tokens_per_sec, 0);
    EXPECT_GT(m.step_time_ms, 0);
    EXPECT_EQ(m.tokens_seen, (m.step + 1) * 4 * 32);
    evals += m.eval_loss.has_value();
  }
  EXPECT_EQ(evals, 3);  // steps 20, 40, 60
  EXPECT_NEAR(rec.steps[0].learning_rate, 3e-3 / 5, 1e-9);  // warmup (t+1)/warmup
  EXPECT_NEAR(rec.steps[4].learning_rate, 3e-3, 1e-9);
  EXPECT_NEAR(rec.steps[59].learning_rate, 3e-4, 1e-9);  // cosine floor 0.1 lr
}

TEST(Trainer, StopIsHonouredWithinOneStep) {
  Fixture f;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  Recorder rec;
  rec.hook = [](Trainer& tr, const StepMetrics& m) {
    if (m.step == 6) tr.request_stop("test stop");
  };
  t.add_callback(&rec);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kStopped);
  EXPECT_EQ(s.steps, 7);
  EXPECT_EQ(s.message, "test stop");
  EXPECT_TRUE(s.val_loss.has_value());  // a stopped run still gets its final evaluation
}

TEST(Trainer, PauseSingleStepAndResumeFromAnotherThread) {
  Fixture f;
  f.train.max_steps = 20;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  Recorder rec;
  std::atomic<int64_t> done{0};
  rec.hook = [&](Trainer&, const StepMetrics& m) { done = m.step + 1; };
  t.add_callback(&rec);
  t.pause();
  std::thread worker([&] { t.train(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(done.load(), 0);  // paused before the first step
  t.step_once();
  for (int i = 0; i < 200 && done.load() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(done.load(), 1);  // exactly one step, then paused again
  t.resume();
  worker.join();
  EXPECT_EQ(done.load(), 20);
}

TEST(Trainer, StopWhilePausedEndsTheRun) {
  Fixture f;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  t.pause();
  TrainSummary s;
  std::thread worker([&] { s = t.train(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  t.request_stop();
  worker.join();
  EXPECT_EQ(s.status, RunStatus::kStopped);
  EXPECT_EQ(s.steps, 0);
}

TEST(Trainer, EarlyStoppingOnEvalLoss) {
  Fixture f;
  f.train.max_steps = 200;
  f.train.eval_interval = 2;
  f.train.learning_rate = 1e-9;  // nothing improves
  f.train.warmup_steps = 0;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  EarlyStopping es(3, 1e-3);
  t.add_callback(&es);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kStopped);
  EXPECT_EQ(s.steps, 8);  // evals at 2 (best), 4, 6, 8 -> 3 without improvement
  EXPECT_NE(s.message.find("early stopping"), std::string::npos);
}

TEST(Trainer, NonFiniteLossMarksTheRunDiverged) {
  Fixture f;
  f.train.optimizer = "sgd";
  f.train.learning_rate = 1e30;
  f.train.max_grad_norm = 0;  // no clipping: let it blow up
  f.train.warmup_steps = 0;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kDiverged);
  EXPECT_LT(s.steps, 60);
  EXPECT_NE(s.message.find("non-finite"), std::string::npos);
}

TEST(Trainer, GradientAccumulationAveragesMicroBatches) {
  // Accumulating 2 micro-batches of 2 must give the mean of their losses and the
  // gradient of that mean: compare with computing both by hand.
  Fixture f;
  f.train.batch_size = 2;
  f.train.grad_accumulation_steps = 2;
  f.train.max_steps = 1;
  f.train.warmup_steps = 0;
  f.train.max_grad_norm = 0;
  auto model = f.make_model();
  auto ref = f.make_model();
  Trainer t(*model, f.train, *f.data);
  Recorder rec;
  t.add_callback(&rec);
  // Expected: the same two batches the sampler will draw.
  BatchSampler sampler(f.data->train(), 2, 32, uint64_t(f.train.seed));
  std::vector<int32_t> x(64), y(64);
  double loss_sum = 0;
  for (Parameter* p : ref->parameters()) p->zero_grad();
  for (int i = 0; i < 2; ++i) {
    sampler.next(x.data(), y.data());
    Tensor l = ref->loss(Tokens{x.data(), Shape{2, 32}}, Tokens{y.data(), Shape{2, 32}});
    loss_sum += l.item();
    current_graph().backward(l, 0.5f);
    current_graph().clear();
  }
  double ref_norm = 0;
  for (Parameter* p : ref->parameters())
    for (int64_t i = 0; i < p->numel(); ++i) ref_norm += double(p->grad()[i]) * p->grad()[i];
  t.train();
  ASSERT_EQ(rec.steps.size(), 1u);
  EXPECT_NEAR(rec.steps[0].loss, loss_sum / 2, 1e-5);
  EXPECT_NEAR(rec.steps[0].grad_norm, std::sqrt(ref_norm), 1e-4 * std::sqrt(ref_norm));
}

TEST(Trainer, InvalidConfigNamesTheField) {
  Fixture f;
  f.train.seq_len = 64;  // > max_seq_len 32
  auto model = f.make_model();
  try {
    Trainer t(*model, f.train, *f.data);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("seq_len"), std::string::npos) << e.what();
  }
}

TEST(Sampler, GreedyTopKTopP) {
  std::vector<float> logits{0.1f, 2.0f, 1.5f, -1.0f, 1.9f};
  Rng rng(1);
  SamplingOptions greedy;
  greedy.temperature = 0;
  EXPECT_EQ(sample_token(logits.data(), 5, greedy, rng), 1);
  SamplingOptions topk;
  topk.top_k = 2;
  for (int i = 0; i < 200; ++i) {
    int32_t t = sample_token(logits.data(), 5, topk, rng);
    EXPECT_TRUE(t == 1 || t == 4) << t;
  }
  SamplingOptions topp;
  topp.top_p = 0.3f;  // the single most likely token already holds > 30%
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sample_token(logits.data(), 5, topp, rng), 1);
  // Temperature 1, no truncation: frequencies follow softmax.
  SamplingOptions plain;
  std::vector<int> counts(5);
  for (int i = 0; i < 20000; ++i) ++counts[size_t(sample_token(logits.data(), 5, plain, rng))];
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int v = 0; v < 5; ++v) EXPECT_NEAR(counts[size_t(v)] / 20000.0, std::exp(logits[size_t(v)]) / z, 0.015);
}

TEST(Sampler, GenerateBeyondMaxSeqLenKeepsGoing) {
  Fixture f;
  auto model = f.make_model();
  Rng rng(2);
  SamplingOptions opt;
  opt.max_new_tokens = 50;  // max_seq_len is 32
  std::vector<int32_t> prompt = f.tok->encode("the ");
  auto out = generate(*model, prompt, opt, rng);
  EXPECT_EQ(out.size(), 50u);
  for (int32_t id : out) EXPECT_LT(id, f.tok->vocab_size());
}

}  // namespace
}  // namespace bl
