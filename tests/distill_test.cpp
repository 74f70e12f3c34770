// Distillation as a training objective and as a run kind: alpha = 1 is plain
// training bit for bit; a distilled student gets closer to its teacher than
// hard labels take it; the launcher records, resumes and refuses it.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "core/presets.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "ops/distill_loss.h"
#include "run/launcher.h"
#include "run_support.h"
#include "temp_files.h"
#include "tensor/graph.h"
#include "test_paths.h"
#include "train/trainer.h"

using namespace bl;

namespace {

using test::launch_error;
using test::shakespeare;

ModelConfig small_model(int64_t d_model, int64_t layers, int64_t vocab) {
  ModelConfig m = load_preset("gpt-tiny").model;
  m.n_layers = layers;
  m.block.d_model = d_model;
  m.block.d_ff = 4 * d_model;
  m.block.n_heads = 4;
  m.block.n_kv_heads = 4;
  m.block.max_seq_len = 64;
  m.vocab_size = vocab;
  return m;
}

TrainConfig small_train(int64_t steps, double lr) {
  TrainConfig t = load_preset("gpt-tiny").train;
  t.max_steps = steps;
  t.warmup_steps = steps / 10;
  t.batch_size = 8;
  t.seq_len = 64;
  t.learning_rate = lr;
  t.eval_interval = 0;
  t.eval_batches = 1;
  t.threads = 1;
  t.seed = 5;
  return t;
}

struct FirstLoss : Callback {
  double loss = 0;
  void on_step_end(Trainer&, const StepMetrics& m) override {
    if (m.step == 0) loss = m.loss;
  }
};

/// Mean distillation objective (ops/distill_loss.h) of the student against
/// the teacher over held-out (validation) batches; alpha 0, T 1 is the KL of
/// the two models' own distributions.
double heldout(LanguageModel& teacher, LanguageModel& student, const TextDataset& data, float T,
               float alpha) {
  const FixedBatches b = make_eval_batches(data.val(), 8, 64, 8, 4242);
  NoGradGuard no_grad;
  Graph& g = current_graph();
  double total = 0;
  for (int64_t i = 0; i < b.n_batches; ++i) {
    const Tokens x{b.x_batch(i), Shape{8, 64}}, y{b.y_batch(i), Shape{8, 64}};
    Tensor tl = teacher.forward(x);
    Tensor sl = student.forward(x);
    total += double(distill_loss(sl, tl, y, T, alpha).item());
    g.clear();
  }
  return total / double(b.n_batches);
}

}  // namespace

TEST(Distill, AlphaOneIsPlainTrainingBitForBit) {
  auto tok = make_tokenizer("char", shakespeare());
  TextDataset data(shakespeare(), *tok);
  const ModelConfig mc = small_model(32, 2, tok->vocab_size());
  LanguageModel plain(mc), distilled(mc), teacher(small_model(64, 1, tok->vocab_size()));
  Rng r1(9), r2(9), r3(10);
  plain.init_weights(r1);
  distilled.init_weights(r2);
  teacher.init_weights(r3);
  const TrainConfig tc = small_train(1, 1e-3);
  Trainer a(plain, tc, data), b(distilled, tc, data);
  b.set_teacher(&teacher, 2.0f, 1.0f);
  FirstLoss la, lb;
  a.add_callback(&la);
  b.add_callback(&lb);
  a.train();
  b.train();
  EXPECT_GT(la.loss, 0.0);
  EXPECT_EQ(std::memcmp(&la.loss, &lb.loss, sizeof(double)), 0) << la.loss << " vs " << lb.loss;
  // The update too: every weight after the step is the same bits.
  auto pa = plain.parameters(), pb = distilled.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    ASSERT_EQ(std::memcmp(pa[i]->data(), pb[i]->data(), size_t(pa[i]->numel()) * sizeof(float)), 0)
        << pa[i]->name();
}

TEST(Distill, LogsTheKlAndTheMixedObjective) {
  auto tok = make_tokenizer("char", shakespeare());
  TextDataset data(shakespeare(), *tok);
  LanguageModel student(small_model(32, 1, tok->vocab_size())),
      teacher(small_model(32, 1, tok->vocab_size()));
  Rng r1(1), r2(2);
  student.init_weights(r1);
  teacher.init_weights(r2);
  Trainer t(student, small_train(2, 1e-3), data);
  t.set_teacher(&teacher, 2.0f, 0.5f);
  struct Extras : Callback {
    double kl = -1, loss = -1, ce = -1;
    void on_step_end(Trainer&, const StepMetrics& m) override {
      ce = m.loss;
      for (auto& [k, v] : m.extra) {
        if (k == "distill_kl") kl = v;
        if (k == "distill_loss") loss = v;
      }
    }
  } ex;
  t.add_callback(&ex);
  t.train();
  EXPECT_GT(ex.kl, 0.0);
  EXPECT_NEAR(ex.loss, 0.5 * ex.ce + 0.5 * 4.0 * ex.kl, 1e-5 * ex.loss);
}

// Per-thread replicas would each need the teacher's forward too: a
// distillation runs one replica, its ops spread over the threads instead.
TEST(Distill, TrainsWithOneReplica) {
  auto tok = make_tokenizer("char", shakespeare());
  TextDataset data(shakespeare(), *tok);
  LanguageModel plain(small_model(32, 1, tok->vocab_size())),
      student(small_model(32, 1, tok->vocab_size())),
      teacher(small_model(32, 1, tok->vocab_size()));
  Rng r1(1), r2(1), r3(2);
  plain.init_weights(r1);
  student.init_weights(r2);
  teacher.init_weights(r3);
  TrainConfig tc = small_train(1, 1e-3);
  tc.threads = 2;  // batch 8 splits over 2 threads: plain training uses 2 replicas
  Trainer a(plain, tc, data), b(student, tc, data);
  b.set_teacher(&teacher, 2.0f, 0.5f);
  a.train();
  b.train();
  EXPECT_EQ(a.replicas(), 2);
  EXPECT_EQ(b.replicas(), 1);
}

TEST(Distill, TrainerRefusesABadTeacher) {
  auto tok = make_tokenizer("char", shakespeare());
  TextDataset data(shakespeare(), *tok);
  LanguageModel student(small_model(32, 1, tok->vocab_size())),
      other_vocab(small_model(32, 1, 256));
  Rng r(1);
  student.init_weights(r);
  Trainer t(student, small_train(2, 1e-3), data);
  try {
    t.set_teacher(&other_vocab, 2.0f, 0.5f);
    FAIL() << "accepted a teacher with another vocabulary";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("(256 tokens) differs from the student's (" +
                                         std::to_string(tok->vocab_size())),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(t.set_teacher(&student, 0.0f, 0.5f), std::invalid_argument);
  EXPECT_THROW(t.set_teacher(&student, 2.0f, 1.01f), std::invalid_argument);
  EXPECT_EQ(t.teacher(), nullptr);
}

// The objective distillation optimises: after the same 60 steps from the same
// initialisation, a student distilled from a trained teacher is closer to it
// (KL(teacher || student) of the models' own distributions, T 1, on held-out
// batches) than the same student trained on hard labels, both for pure KL
// (alpha 0) and mixed with the hard labels (alpha 0.5). At T 2 the softened
// targets move the T-1 distributions more slowly: in so short a run such a
// student is not yet ahead (measured: KL 0.53 against 0.45), so it is not
// asserted here.
TEST(Distill, StudentGetsCloserToTeacherThanHardLabels) {
  auto tok = make_tokenizer("char", shakespeare());
  TextDataset data(shakespeare(), *tok);
  const int64_t V = tok->vocab_size();
  LanguageModel teacher(small_model(64, 2, V));
  Rng rt(3);
  teacher.init_weights(rt);
  {
    Trainer t(teacher, small_train(100, 3e-3), data);
    t.train();
  }
  const ModelConfig sc = small_model(32, 1, V);
  auto student = [&](LanguageModel* from, float T, float alpha) {
    auto m = std::make_unique<LanguageModel>(sc);
    Rng r(4);
    m->init_weights(r);
    Trainer t(*m, small_train(60, 3e-3), data);
    if (from) t.set_teacher(from, T, alpha);
    t.train();
    return m;
  };
  auto hard = student(nullptr, 0, 0);
  auto pure = student(&teacher, 1.0f, 0.0f);
  auto mixed = student(&teacher, 1.0f, 0.5f);
  const double kl_hard_again =
      heldout(teacher, *student(nullptr, 0, 0) /* 60 steps */, data, 1.0f, 0.0f);
  const double kl_hard = heldout(teacher, *hard, data, 1.0f, 0.0f);
  const double kl_pure = heldout(teacher, *pure, data, 1.0f, 0.0f);
  const double kl_mixed = heldout(teacher, *mixed, data, 1.0f, 0.0f);
  std::printf(
      "held-out KL(teacher || student), T 1: hard labels %.4f, distilled alpha 0 %.4f, "
      "alpha 0.5 %.4f\n",
      kl_hard, kl_pure, kl_mixed);
  EXPECT_EQ(kl_hard_again, kl_hard);  // the same run twice: the comparison is deterministic
  EXPECT_LT(kl_pure, kl_hard);
  EXPECT_LT(kl_mixed, kl_hard);
}

// --- the launcher: a distillation is a run kind, recorded with its teacher ---

namespace {

RunSpec tiny_spec(const test::TempDir& dir, const std::string& tokenizer = "") {
  RunSpec s;
  s.preset_name = "gpt-tiny";
  s.set = {"model.n_layers=1", "model.block.d_model=32", "model.block.d_ff=64",
           "train.eval_interval=0", "train.eval_batches=1"};
  s.train.max_steps = 3;
  s.train.warmup_steps = 0;
  s.train.batch_size = 2;
  s.train.seq_len = 16;
  s.train.threads = 1;
  s.tokenizer = tokenizer;
  s.data_path = dir / "data.txt";
  if (!std::filesystem::exists(s.data_path))
    test::write_bytes(s.data_path, shakespeare().substr(0, 20000));
  s.db_path = dir / "experiments.db";
  return s;
}

}  // namespace

TEST(Distill, LauncherRecordsResumesAndRefuses) {
  test::TempDir dir;
  RunSpec ts = tiny_spec(dir);
  int64_t teacher_id = 0;
  {
    auto t = launch_run(ts);
    t->train();
    teacher_id = t->run_id();
  }
  RunSpec ds = tiny_spec(dir);
  ds.kind = RunKind::kDistill;
  ds.distill.teacher_run_id = teacher_id;
  ds.distill.temperature = 3.0;
  ds.distill.alpha = 0.25;
  ds.train.max_steps = 2;
  int64_t id = 0;
  {
    auto d = launch_run(ds);
    ASSERT_NE(d->teacher(), nullptr);
    ASSERT_EQ(d->trainer().teacher(), d->teacher());
    EXPECT_EQ(d->train().status, RunStatus::kCompleted);
    id = d->run_id();
  }
  {
    ExperimentStore store(ds.db_path);
    const RunRecord r = *store.get_run(id);
    EXPECT_EQ(r.parent_run_id, teacher_id);
    ASSERT_TRUE(is_distill_run(r));
    EXPECT_EQ(r.summary["distill"]["teacher_run"], teacher_id);
    EXPECT_EQ(r.summary["distill"]["temperature"], 3.0);
    EXPECT_EQ(r.summary["distill"]["alpha"], 0.25);
    EXPECT_NE(std::find(r.tags.begin(), r.tags.end(), "distill"), r.tags.end());
  }
  // Trained further, it reloads its recorded teacher.
  RunSpec rs;
  rs.kind = RunKind::kResume;
  rs.parent_run_id = id;
  rs.train.max_steps = 4;
  rs.db_path = ds.db_path;
  {
    auto r = launch_run(rs);
    ASSERT_NE(r->teacher(), nullptr) << "a resumed distillation lost its teacher";
    EXPECT_FLOAT_EQ(r->plan().distill->temperature, 3.0);
    const TrainSummary sum = r->train();
    EXPECT_EQ(sum.status, RunStatus::kCompleted);
    EXPECT_EQ(sum.steps, 4);
    EXPECT_TRUE(is_distill_run(*r->store().get_run(r->run_id())));
  }

  // Refusals, all before a run row is created.
  const size_t runs = ExperimentStore(ds.db_path).list_runs().size();
  RunSpec bad = ds;
  bad.distill.teacher_run_id = 999;
  EXPECT_NE(launch_error(bad).find("no run with id 999"), std::string::npos) << launch_error(bad);
  bad = ds;
  bad.distill.teacher_run_id.reset();
  bad.distill.teacher_checkpoint = dir / "nowhere";
  EXPECT_NE(launch_error(bad).find("does not exist"), std::string::npos) << launch_error(bad);
  bad = ds;
  bad.distill.temperature = 0;
  EXPECT_NE(launch_error(bad).find("--distill-temperature must be > 0"), std::string::npos);
  bad = ds;
  bad.distill.alpha = -0.5;
  EXPECT_NE(launch_error(bad).find("--distill-alpha must be in [0, 1]"), std::string::npos);
  bad = tiny_spec(dir, "byte");  // the teacher read the corpus with "char"
  bad.kind = RunKind::kDistill;
  bad.distill.teacher_run_id = teacher_id;
  const std::string e = launch_error(bad);
  EXPECT_NE(e.find("the student's tokenizer (byte, vocab 256) differs from teacher run " +
                   std::to_string(teacher_id)),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("(char, vocab"), std::string::npos) << e;
  EXPECT_EQ(ExperimentStore(ds.db_path).list_runs().size(), runs);
}
