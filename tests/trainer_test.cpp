// The training loop's contract: learning on a tiny model, stop within one
// step, pause / single step / resume from another thread, early stopping,
// divergence detection, gradient accumulation, and sampling options.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "generate/sampler.h"
#include "tensor/graph.h"

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
  EXPECT_EQ(evals, 3);                                      // steps 20, 40, 60
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
  for (int i = 0; i < 200 && done.load() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
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

// With 2 threads a data-parallel-safe model trains as 2 replicas, each on half
// the rows; the step must equal the 1-thread step up to summation order: same
// loss, same gradients (compared at the end of step 1, before the next zeroes
// them), including learned positions (a view into the parameter's gradient)
// and gradient accumulation.
TEST(Trainer, DataParallelStepMatchesOneThread) {
  for (const char* kind : {"llama-like", "gpt-like"}) {
    Fixture f;
    if (std::string(kind) == "gpt-like") {
      f.model.block.attention = "mha";
      f.model.block.n_kv_heads.reset();
      f.model.block.position = "learned";
      f.model.block.norm = "layer_norm";
      f.model.block.ffn = "standard";
    }
    f.train.max_steps = 1;
    f.train.warmup_steps = 0;
    f.train.grad_accumulation_steps = 2;
    struct Grads : Callback {
      std::vector<std::vector<float>> g;
      double loss = 0;
      void on_step_end(Trainer& t, const StepMetrics& m) override {
        loss = m.loss;
        for (Parameter* p : t.model().parameters())
          g.emplace_back(p->grad(), p->grad() + p->numel());
      }
    };
    Grads one, two;
    for (int threads : {1, 2}) {
      auto model = f.make_model();
      f.train.threads = threads;
      Trainer t(*model, f.train, *f.data);
      t.add_callback(threads == 1 ? &one : &two);
      t.train();
      EXPECT_EQ(t.replicas(), threads) << kind;
    }
    EXPECT_NEAR(two.loss, one.loss, 1e-6 * one.loss) << kind;
    ASSERT_EQ(one.g.size(), two.g.size());
    // Per tensor relative to its largest entry; tensors whose gradient is
    // rounding noise (a bias that cancels, ~1e-13) against the model's largest.
    float global = 0;
    for (const auto& g : one.g)
      for (float v : g) global = std::max(global, std::abs(v));
    ASSERT_GT(global, 0.0f) << kind;
    for (size_t i = 0; i < one.g.size(); ++i) {
      float scale = 0;
      for (float v : one.g[i]) scale = std::max(scale, std::abs(v));
      const float tol = 1e-4f * std::max(scale, 1e-3f * global);
      for (size_t j = 0; j < one.g[i].size(); ++j)
        ASSERT_NEAR(two.g[i][j], one.g[i][j], tol) << kind << " parameter " << i;
    }
  }
}

// Models whose forward keeps state (MoE load statistics), draws dropout or adds
// auxiliary losses stay op-parallel; an odd batch cannot split evenly.
TEST(Trainer, DataParallelOnlyWhereSafe) {
  auto run = [&](const std::function<void(Fixture&)>& tweak) {
    Fixture g;
    g.train.max_steps = 1;
    g.train.warmup_steps = 0;
    g.train.threads = 2;
    tweak(g);
    auto model = g.make_model();
    Trainer t(*model, g.train, *g.data);
    t.train();
    return t.replicas();
  };
  EXPECT_EQ(run([](Fixture&) {}), 2);
  EXPECT_EQ(run([](Fixture& g) { g.train.batch_size = 3; }), 1);
  EXPECT_EQ(run([](Fixture& g) { g.model.block.dropout = 0.1; }), 1);
  EXPECT_EQ(run([](Fixture& g) { g.model.mtp_n_predict = 1; }), 1);
  EXPECT_EQ(run([](Fixture& g) {
              g.model.block.ffn = "moe";
              g.model.block.n_experts = 4;
            }),
            1);
}

TEST(Parameter, ReplicaGradientsAreSeparateAndChecked) {
  Parameter p("w", Shape{3});
  {
    ReplicaScope r1(1);
    EXPECT_THROW(p.tensor(), std::logic_error);  // set_replicas not called
  }
  p.set_replicas(2);
  Tensor t0 = p.tensor();
  Tensor t1;
  {
    ReplicaScope r1(1);
    t1 = p.tensor();
  }
  EXPECT_EQ(t0.data(), t1.data());  // one value
  ASSERT_NE(t0.grad(), nullptr);
  ASSERT_NE(t1.grad(), nullptr);
  EXPECT_NE(t0.grad(), t1.grad());  // two gradients
  t1.grad()[0] = 5;
  p.zero_grad();
  EXPECT_EQ(p.replica_grad(1)[0], 0.0f);
  p.set_trainable(false);
  EXPECT_EQ(p.replica_grad(1), nullptr);
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

TEST(Trainer, FlopBudgetEndsTheRunAndTheScheduleAtTheLastStepThatFits) {
  Fixture f;
  auto model = f.make_model();
  const double per_step = model->flops_per_token(f.train.seq_len) * double(f.train.batch_size) *
                          double(f.train.seq_len);
  f.train.flop_budget = per_step * 10.5;  // 10 steps fit, not 11
  Trainer t(*model, f.train, *f.data);
  EXPECT_EQ(t.horizon(), 10);
  EXPECT_EQ(t.schedule().options().total_steps, 10);  // the cosine ends with the budget
  Recorder rec;
  t.add_callback(&rec);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kCompleted);
  EXPECT_EQ(s.steps, 10);
  EXPECT_NE(s.message.find("FLOP budget"), std::string::npos) << s.message;
  ASSERT_EQ(rec.steps.size(), 10u);
  // The last step runs at the schedule's floor: min_lr_ratio of the peak.
  EXPECT_NEAR(rec.steps.back().learning_rate, f.train.learning_rate * f.train.min_lr_ratio,
              1e-6 * f.train.learning_rate);
  EXPECT_LT(rec.steps.back().learning_rate, rec.steps[5].learning_rate);
}

TEST(Trainer, FlopBudgetLargerThanMaxStepsChangesNothing) {
  Fixture f;
  f.train.max_steps = 8;
  auto model = f.make_model();
  f.train.flop_budget = 1e30;
  Trainer t(*model, f.train, *f.data);
  EXPECT_EQ(t.horizon(), 8);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kCompleted);
  EXPECT_EQ(s.steps, 8);
  EXPECT_EQ(s.message, "");
}

TEST(Trainer, FlopBudgetBelowTheWarmupIsAConfigErrorNamingTheField) {
  Fixture f;
  auto model = f.make_model();
  const double per_step = model->flops_per_token(f.train.seq_len) * double(f.train.batch_size) *
                          double(f.train.seq_len);
  f.train.flop_budget = per_step * 3;  // warmup_steps is 5
  try {
    Trainer t(*model, f.train, *f.data);
    FAIL() << "a budget of 3 steps with 5 warm-up steps was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.flop_budget"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("warmup_steps"), std::string::npos) << e.what();
  }
}

TEST(Trainer, TimeBudgetStopsBeforeAStepThatWouldEndPastIt) {
  Fixture f;
  f.train.max_steps = 100000;
  f.train.warmup_steps = 0;
  f.train.eval_interval = 0;
  f.train.time_budget_s = 0.3;
  auto model = f.make_model();
  Trainer t(*model, f.train, *f.data);
  Recorder rec;
  // Steps 40 ms apart at least (a slow callback counts against the budget):
  // about 7 fit in 0.3 s.
  rec.hook = [](Trainer&, const StepMetrics&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  };
  t.add_callback(&rec);
  TrainSummary s = t.train();
  EXPECT_EQ(s.status, RunStatus::kCompleted);
  EXPECT_NE(s.message.find("time budget of 0.3 s"), std::string::npos) << s.message;
  EXPECT_GE(s.steps, 2);
  EXPECT_LE(s.steps, 8);  // 0.3 s / 40 ms, and no step begun past the budget
  ASSERT_FALSE(rec.steps.empty());
  // The last step began only if a step like the ones before still fit (25%
  // margin: on a loaded machine one step can take longer than the last five).
  EXPECT_LT(rec.steps.back().wall_time_s, 0.375);
}

TEST(Trainer, BudgetsMustBeFiniteAndNonNegative) {
  TrainConfig t;
  t.flop_budget = -1;
  t.time_budget_s = std::nan("");
  const auto e = validation_errors(t, "train");
  bool flop = false, time = false;
  for (const auto& m : e) {
    flop |= m.find("train.flop_budget") != std::string::npos;
    time |= m.find("train.time_budget_s") != std::string::npos;
  }
  EXPECT_TRUE(flop && time);
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
  for (int v = 0; v < 5; ++v)
    EXPECT_NEAR(counts[size_t(v)] / 20000.0, std::exp(logits[size_t(v)]) / z, 0.015);
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
