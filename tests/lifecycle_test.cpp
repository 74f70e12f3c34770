// Run lifecycle inside one process: StoreLogger records runs (metrics, evals,
// summary, status), CheckpointSaver checkpoints and prunes, a resumed run
// reproduces the uninterrupted loss sequence, divergence and failures end in
// the right status with everything logged so far kept.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "io/sha256.h"
#include "store/experiment_store.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH
#include "train/checkpoint.h"
#include "train/store_logger.h"
#include "train/trainer.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const std::string& corpus_path() {
  static const std::string p =
      std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt";
  return p;
}

// The first 200 kB of the bundled corpus, tokenized once.
struct Corpus {
  std::string text;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<TextDataset> data;
};
const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    c.text = read_text_file(corpus_path()).substr(0, 200000);
    c.tok = make_tokenizer("char", c.text);
    c.data = std::make_unique<TextDataset>(c.text, *c.tok);
    return c;
  }();
  return c;
}

ModelConfig tiny_model(double dropout = 0.1) {
  ModelConfig m;
  m.block.d_model = 32;
  m.block.n_heads = 2;
  m.block.d_ff = 64;
  m.block.max_seq_len = 32;
  m.block.position = "learned";
  m.block.dropout = dropout;
  m.n_layers = 2;
  m.vocab_size = corpus().tok->vocab_size();
  return m;
}

TrainConfig tiny_train(int64_t steps = 12) {
  TrainConfig t;
  t.learning_rate = 3e-3;
  t.warmup_steps = 2;
  t.max_steps = steps;
  t.batch_size = 2;
  t.grad_accumulation_steps = 2;
  t.seq_len = 32;
  t.eval_interval = 4;
  t.eval_batches = 2;
  t.checkpoint_interval = 0;
  t.seed = 11;
  t.threads = 1;
  return t;
}

std::unique_ptr<LanguageModel> fresh_model(const ModelConfig& c, const TrainConfig& t) {
  auto m = std::make_unique<LanguageModel>(c);
  Rng rng(uint64_t(t.seed));
  m->init_weights(rng);
  return m;
}

/// Records every step's loss; optionally stops the run after `stop_after` steps.
class Recorder : public Callback {
 public:
  explicit Recorder(int64_t stop_after = -1) : stop_after_(stop_after) {}
  void on_step_end(Trainer& t, const StepMetrics& m) override {
    loss[m.step] = m.loss;
    if (stop_after_ > 0 && t.step() == stop_after_) t.request_stop("test stop");
  }
  std::map<int64_t, double> loss;

 private:
  int64_t stop_after_;
};

RunRecord describe_run(const std::string& name) {
  RunRecord r;
  r.name = name;
  DatasetFingerprint fp = fingerprint_dataset(corpus_path());
  r.dataset_path = fp.path;
  r.dataset_size = fp.size;
  r.dataset_sha256 = fp.sha256;
  r.tokenizer = corpus().tok->to_json();
  return r;
}

// ------------------------------------------------------------------ resume

class Resume : public ::testing::TestWithParam<std::string> {};

TEST_P(Resume, ReproducesTheUninterruptedLossSequence) {
  TempDir dir;
  const Corpus& c = corpus();
  TrainConfig tc = tiny_train(12);
  tc.optimizer = GetParam();
  const ModelConfig mc = tiny_model(0.1);  // dropout on: its RNG must be restored too

  // Uninterrupted: 12 steps.
  auto straight_model = fresh_model(mc, tc);
  Trainer straight(*straight_model, tc, *c.data);
  Recorder all;
  straight.add_callback(&all);
  ASSERT_EQ(straight.train().status, RunStatus::kCompleted);

  // Interrupted after 6 of 12 steps (same schedule horizon), checkpointed at the end.
  auto first_model = fresh_model(mc, tc);
  Trainer first(*first_model, tc, *c.data);
  Recorder head(6);
  CheckpointSaver saver(*c.tok, {},
                        [&](int64_t step) { return dir / ("step-" + std::to_string(step)); });
  first.add_callback(&head);
  first.add_callback(&saver);
  TrainSummary s1 = first.train();
  ASSERT_EQ(s1.status, RunStatus::kStopped);
  ASSERT_EQ(saver.last_step(), 6);

  // Resume in a fresh model + trainer from the checkpoint alone.
  CheckpointInfo info = read_checkpoint_info(saver.last_dir());
  EXPECT_EQ(info.step, 6);
  EXPECT_EQ(info.train, tc);
  LanguageModel model(info.model);  // uninitialised: everything comes from the checkpoint
  load_model_weights(saver.last_dir(), model);
  Trainer resumed(model, info.train, *c.data);
  load_trainer_state(saver.last_dir(), resumed);
  EXPECT_EQ(resumed.step(), 6);
  Recorder tail;
  resumed.add_callback(&tail);
  ASSERT_EQ(resumed.train().status, RunStatus::kCompleted);

  ASSERT_EQ(all.loss.size(), 12u);
  ASSERT_EQ(head.loss.size(), 6u);
  ASSERT_EQ(tail.loss.size(), 6u);
  for (int64_t s = 0; s < 6; ++s) EXPECT_EQ(head.loss[s], all.loss[s]) << "step " << s;
  for (int64_t s = 6; s < 12; ++s) {
    ASSERT_TRUE(tail.loss.count(s)) << "resumed run did not continue at step " << s;
    EXPECT_NEAR(tail.loss[s], all.loss[s], 1e-6 * std::fabs(all.loss[s])) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, Resume,
                         ::testing::Values("adamw", "lion", "adafactor", "sgd"));

// ------------------------------------------------------------------ store logger

TEST(StoreLogger, RecordsConfigMetricsEvalsCheckpointsAndSummary) {
  TempDir dir;
  const Corpus& c = corpus();
  ExperimentStore store(dir / "exp.db");
  const TrainConfig tc = tiny_train(10);
  auto model = fresh_model(tiny_model(), tc);
  Trainer trainer(*model, tc, *c.data);
  RunRecord rec = describe_run("tiny");
  rec.preset = "none";
  rec.tags = {"test"};
  StoreLogger logger(store, rec);
  CheckpointPolicy policy;
  policy.interval = 3;  // steps 3, 6, 9 and the end (10); keep the last 2
  CheckpointSaver saver(
      *c.tok, policy,
      [&](int64_t step) { return run_checkpoint_dir(store.path(), logger.run_id(), step); },
      [&](int64_t step, const std::string& d) { logger.add_checkpoint(step, d); });
  trainer.add_callback(&saver);
  trainer.add_callback(&logger);
  TrainSummary sum = trainer.train();
  ASSERT_EQ(sum.status, RunStatus::kCompleted);
  const int64_t id = logger.run_id();
  ASSERT_GT(id, 0);
  EXPECT_TRUE(logger.finished());

  auto run = store.get_run(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kCompleted);
  EXPECT_TRUE(run->finished_at.has_value());
  EXPECT_EQ(run->name, "tiny");
  EXPECT_EQ(run->tags, std::vector<std::string>{"test"});
  EXPECT_EQ(model_config_from_json(run->model_config), model->config());
  EXPECT_EQ(train_config_from_json(run->train_config), tc);
  EXPECT_EQ(run->param_count, model->num_parameters());
  EXPECT_EQ(run->dataset_sha256, sha256_file(corpus_path()));
  EXPECT_EQ(run->dataset_size, int64_t(fs::file_size(corpus_path())));
  EXPECT_EQ(run->tokenizer, c.tok->to_json());
  EXPECT_EQ(run->program_version, BLOCKLAB_VERSION);
  EXPECT_EQ(run->summary["status"], "completed");
  EXPECT_EQ(run->summary["steps"], 10);
  EXPECT_NEAR(run->summary["final_train_loss"].get<double>(), sum.final_train_loss, 1e-12);
  EXPECT_TRUE(run->summary.contains("logging_overhead_pct"));

  for (const char* name :
       {"loss", "learning_rate", "grad_norm", "tokens_per_sec", "step_time_ms", "tokens_seen"}) {
    MetricSeries s = store.metrics(id, name);
    ASSERT_EQ(s.size(), 10u) << name;
    for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(s.steps[size_t(i)], i) << name;
  }
  EXPECT_EQ(store.metrics(id, "tokens_seen").values.back(), 10.0 * 2 * 2 * 32);
  // Evaluations at steps 3 and 7 (every 4 steps) and the final one at step 9.
  std::vector<EvalRecord> evals = store.evals(id, "eval_loss");
  ASSERT_EQ(evals.size(), 3u);
  EXPECT_EQ(evals[0].step, 3);
  EXPECT_EQ(evals[2].step, 9);
  EXPECT_EQ(store.metrics(id, "eval_loss").size(), 3u);
  EXPECT_NEAR(evals[2].value, *sum.val_loss, 1e-12);

  // Checkpoints 3, 6, 9, 10 registered; only the newest two kept on disk.
  std::vector<CheckpointRecord> ck = store.checkpoints(id);
  ASSERT_EQ(ck.size(), 4u);
  EXPECT_EQ(ck[0].step, 3);
  EXPECT_EQ(ck[3].step, 10);
  EXPECT_EQ(ck[3].path, run_checkpoint_dir(store.path(), id, 10));
  // The recorded SHA-256 is the manifest's, which lists every file's.
  EXPECT_EQ(ck[3].sha256, sha256_file(ck[3].path + "/manifest.json"));
  EXPECT_NO_THROW(verify_checkpoint(ck[3].path, ck[3].sha256));
  EXPECT_FALSE(fs::exists(ck[0].path));
  EXPECT_FALSE(fs::exists(ck[1].path));
  EXPECT_TRUE(fs::exists(ck[2].path + "/checkpoint.json"));
  auto latest = latest_checkpoint(store, id);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->step, 10);
  fs::remove_all(ck[3].path);  // a deleted checkpoint is skipped
  EXPECT_EQ(latest_checkpoint(store, id)->step, 9);
}

TEST(StoreLogger, StoppedRunIsMarkedStopped) {
  TempDir dir;
  ExperimentStore store(dir / "exp.db");
  const TrainConfig tc = tiny_train(12);
  auto model = fresh_model(tiny_model(), tc);
  Trainer trainer(*model, tc, *corpus().data);
  StoreLogger logger(store, describe_run("stop"));
  Recorder stop(5);
  trainer.add_callback(&logger);
  trainer.add_callback(&stop);
  trainer.train();
  auto run = store.get_run(logger.run_id());
  EXPECT_EQ(run->status, RunStatus::kStopped);
  EXPECT_EQ(run->status_message, "test stop");
  EXPECT_EQ(store.metrics(logger.run_id(), "loss").size(), 5u);
}

// ------------------------------------------------------------------ divergence / failure

TEST(StoreLogger, AbsurdLearningRateDivergesAndKeepsEveryMetric) {
  TempDir dir;
  ExperimentStore store(dir / "exp.db");
  TrainConfig tc = tiny_train(50);
  tc.optimizer = "sgd";
  tc.learning_rate = 1e6;
  tc.max_grad_norm = 0;  // no clipping: the update explodes at once
  tc.warmup_steps = 0;
  auto model = fresh_model(tiny_model(0.0), tc);
  Trainer trainer(*model, tc, *corpus().data);
  StoreLogger logger(store, describe_run("diverge"));
  CheckpointPolicy policy;
  policy.interval = 1;
  int saved = 0;
  CheckpointSaver saver(
      *corpus().tok, policy, [&](int64_t s) { return dir / ("c" + std::to_string(s)); },
      [&](int64_t, const std::string&) { ++saved; });
  trainer.add_callback(&saver);
  trainer.add_callback(&logger);
  TrainSummary sum = trainer.train();
  ASSERT_EQ(sum.status, RunStatus::kDiverged);
  ASSERT_LT(sum.steps, 50);
  auto run = store.get_run(logger.run_id());
  EXPECT_EQ(run->status, RunStatus::kDiverged);
  EXPECT_NE(run->status_message.find("non-finite"), std::string::npos) << run->status_message;
  EXPECT_EQ(run->summary["status"], "diverged");
  MetricSeries loss = store.metrics(logger.run_id(), "loss");
  MetricSeries gnorm = store.metrics(logger.run_id(), "grad_norm");
  ASSERT_EQ(loss.size(), size_t(sum.steps));  // every step, including the one that diverged
  EXPECT_EQ(gnorm.size(), size_t(sum.steps));
  const double last_loss = loss.values.back(), last_gnorm = gnorm.values.back();
  EXPECT_FALSE(std::isfinite(last_loss) && std::isfinite(last_gnorm));
  EXPECT_EQ(saved, int(sum.steps) - 1);  // never a checkpoint of the diverged step
}

TEST(StoreLogger, InjectedNaNDivergesAtThatStep) {
  TempDir dir;
  ExperimentStore store(dir / "exp.db");
  const TrainConfig tc = tiny_train(20);
  auto model = fresh_model(tiny_model(0.0), tc);
  Trainer trainer(*model, tc, *corpus().data);
  StoreLogger logger(store, describe_run("nan"));
  struct Poison : Callback {
    void on_step_end(Trainer& t, const StepMetrics&) override {
      if (t.step() == 4) t.model().named_parameters()[0].second->data()[0] = NAN;
    }
  } poison;
  trainer.add_callback(&logger);
  trainer.add_callback(&poison);
  TrainSummary sum = trainer.train();
  EXPECT_EQ(sum.status, RunStatus::kDiverged);
  EXPECT_EQ(sum.steps, 5);  // steps 0-3 fine, step 4 sees the NaN
  auto run = store.get_run(logger.run_id());
  EXPECT_EQ(run->status, RunStatus::kDiverged);
  MetricSeries loss = store.metrics(logger.run_id(), "loss");
  ASSERT_EQ(loss.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isfinite(loss.values[size_t(i)]));
  EXPECT_TRUE(std::isnan(loss.values[4]));
  EXPECT_EQ(store.evals(logger.run_id()).size(), 1u);  // the eval at step 3 is kept
}

TEST(StoreLogger, ExceptionDuringTrainingMarksTheRunFailed) {
  TempDir dir;
  ExperimentStore store(dir / "exp.db");
  const TrainConfig tc = tiny_train(20);
  auto model = fresh_model(tiny_model(), tc);
  int64_t id = 0;
  {
    Trainer trainer(*model, tc, *corpus().data);
    StoreLogger logger(store, describe_run("boom"));
    struct Boom : Callback {
      void on_step_end(Trainer& t, const StepMetrics&) override {
        if (t.step() == 3) throw std::runtime_error("disk on fire");
      }
    } boom;
    trainer.add_callback(&logger);
    trainer.add_callback(&boom);
    EXPECT_THROW(trainer.train(), std::runtime_error);
    id = logger.run_id();
    logger.fail("disk on fire");
    EXPECT_TRUE(logger.finished());
  }
  auto run = store.get_run(id);
  EXPECT_EQ(run->status, RunStatus::kFailed);
  EXPECT_EQ(run->status_message, "disk on fire");
  EXPECT_EQ(store.metrics(id, "loss").size(), 3u);

  // Without an explicit fail(), destroying the logger marks the run failed.
  Trainer trainer(*model, tc, *corpus().data);
  auto logger = std::make_unique<StoreLogger>(store, describe_run("dropped"));
  const int64_t id2 = logger->begin(trainer);
  logger.reset();
  EXPECT_EQ(store.get_run(id2)->status, RunStatus::kFailed);
}

TEST(StoreLogger, ResumedRunLinksToItsParent) {
  TempDir dir;
  ExperimentStore store(dir / "exp.db");
  const TrainConfig tc = tiny_train(8);
  auto model = fresh_model(tiny_model(), tc);
  Trainer first(*model, tc, *corpus().data);
  StoreLogger parent(store, describe_run("parent"));
  Recorder stop(4);
  CheckpointSaver saver(
      *corpus().tok, {},
      [&](int64_t s) { return run_checkpoint_dir(store.path(), parent.run_id(), s); },
      [&](int64_t s, const std::string& d) { parent.add_checkpoint(s, d); });
  first.add_callback(&saver);
  first.add_callback(&parent);
  first.add_callback(&stop);
  first.train();
  auto ck = latest_checkpoint(store, parent.run_id());
  ASSERT_TRUE(ck);
  ASSERT_EQ(ck->step, 4);

  CheckpointInfo info = read_checkpoint_info(ck->path);
  LanguageModel m(info.model);
  load_model_weights(ck->path, m);
  Trainer second(m, info.train, *corpus().data);
  load_trainer_state(ck->path, second);
  RunRecord rec = describe_run("parent");
  rec.parent_run_id = parent.run_id();
  StoreLogger child(store, rec);
  second.add_callback(&child);
  second.train();
  auto run = store.get_run(child.run_id());
  EXPECT_EQ(run->parent_run_id, parent.run_id());
  EXPECT_EQ(run->status, RunStatus::kCompleted);
  MetricSeries loss = store.metrics(child.run_id(), "loss");
  ASSERT_EQ(loss.size(), 4u);
  EXPECT_EQ(loss.steps.front(), 4);  // the curve continues where the checkpoint was
  EXPECT_EQ(store.metrics(child.run_id(), "tokens_seen").values.front(),
            5.0 * tc.batch_size * tc.seq_len * 2);
}

// Logging cost is measured by bench/store_bench.cpp (BM_StoreLogStep), not
// by a timed test.

}  // namespace
}  // namespace bl
