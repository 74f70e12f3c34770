// Data parallelism over processes, in one process: the single-process
// communicator, the flat gradient / weight buffer, and the trainer's
// distributed step path at one rank (which must train exactly as without a
// communicator). The multi-rank runs are in cli_distributed_test.cpp.
#include "dist/communicator.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "dist/flat_buffer.h"
#include "store/process_status.h"
#include "train/trainer.h"

namespace bl {
namespace {

TEST(Communicator, SingleProcessCollectivesAreTheIdentity) {
  SingleProcessCommunicator c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  float f[3] = {1.5f, -2.0f, 3.25f};
  c.allreduce_sum(f, 3);
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 3.25f);
  double d[2] = {0.1, 7.0};
  c.allreduce_sum(d, 2);
  EXPECT_EQ(d[0], 0.1);
  EXPECT_EQ(d[1], 7.0);
  EXPECT_EQ(broadcast_string(c, "rank zero's spec", 0), "rank zero's spec");
  ASSERT_EQ(c.hosts().size(), 1u);
  EXPECT_EQ(c.hosts()[0], host_name());
  EXPECT_FALSE(host_name().empty());
}

TEST(Communicator, WithoutMpiTheErrorSaysHowToEnableIt) {
  if (have_mpi()) GTEST_SKIP() << "this build has MPI: make_mpi_communicator works";
  try {
    make_mpi_communicator();
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("libopenmpi-dev"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rebuild"), std::string::npos) << e.what();
  }
}

TEST(FlatBuffer, PacksDistinctParametersInOrderAndBack) {
  Parameter a("a", Shape{2, 3}), frozen("frozen", Shape{4}, false), c("c", Shape{5});
  for (int i = 0; i < 6; ++i) a.grad()[i] = float(i), a.data()[i] = float(10 + i);
  for (int i = 0; i < 4; ++i) frozen.data()[i] = float(20 + i);
  for (int i = 0; i < 5; ++i) c.grad()[i] = float(100 + i), c.data()[i] = float(30 + i);
  // `a` listed twice (a tied weight) counts once; the frozen one has no gradient.
  const std::vector<Parameter*> params = {&a, &frozen, &a, &c};

  FlatBuffer grads(params, FlatBuffer::Field::kGrad);
  ASSERT_EQ(grads.size(), 11);
  grads.gather();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(grads.data()[i], float(i));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(grads.data()[6 + i], float(100 + i));
  for (int i = 0; i < 11; ++i) grads.data()[i] = float(-i);
  grads.scatter();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.grad()[i], float(-i));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.grad()[i], float(-6 - i));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.data()[i], float(10 + i));  // values untouched

  FlatBuffer values(params, FlatBuffer::Field::kValue);
  ASSERT_EQ(values.size(), 15);
  values.gather();
  EXPECT_EQ(values.data()[0], 10.0f);
  EXPECT_EQ(values.data()[6], 20.0f);
  EXPECT_EQ(values.data()[10], 30.0f);
  values.data()[6] = -1.0f;
  values.scatter();
  EXPECT_EQ(frozen.data()[0], -1.0f);
}

/// Pretends to be `n` ranks: only for checks made before any collective.
class FakeRanks final : public Communicator {
 public:
  explicit FakeRanks(int n) : n_(n) {}
  int rank() const override { return 0; }
  int size() const override { return n_; }
  void allreduce_sum(float*, int64_t) override { throw std::logic_error("no collectives"); }
  void allreduce_sum(double*, int64_t) override { throw std::logic_error("no collectives"); }
  void broadcast(void*, int64_t, int) override { throw std::logic_error("no collectives"); }
  std::vector<std::string> hosts() override { return {}; }
  [[noreturn]] void abort(int) override { throw std::logic_error("no abort"); }
  std::string name() const override { return "fake"; }

 private:
  int n_;
};

struct TinyRun {
  std::string text;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<TextDataset> data;
  ModelConfig model;
  TrainConfig train;
  TinyRun() {
    for (int i = 0; i < 60; ++i) text += "to be, or not to be, that is the question. ";
    tok = make_tokenizer("char", text);
    data = std::make_unique<TextDataset>(text, *tok, 0.1);
    model.vocab_size = tok->vocab_size();
    model.n_layers = 2;
    model.block.d_model = 32;
    model.block.n_heads = 4;
    model.block.d_ff = 64;
    model.block.max_seq_len = 32;
    train.seq_len = 32;
    train.batch_size = 4;
    train.max_steps = 10;
    train.warmup_steps = 2;
    train.eval_interval = 5;
    train.eval_batches = 3;
    train.seed = 5;
  }
  std::unique_ptr<LanguageModel> make_model() const {
    auto m = std::make_unique<LanguageModel>(model);
    Rng rng(7);
    m->init_weights(rng);
    return m;
  }
};

struct Curve : Callback {
  std::vector<double> loss, grad_norm, eval;
  void on_step_end(Trainer&, const StepMetrics& m) override {
    loss.push_back(m.loss);
    grad_norm.push_back(m.grad_norm);
    if (m.eval_loss) eval.push_back(*m.eval_loss);
  }
};

Curve train_curve(const TinyRun& s, int threads, Communicator* comm) {
  auto model = s.make_model();
  TrainConfig t = s.train;
  t.threads = threads;
  Trainer trainer(*model, t, *s.data);
  trainer.set_communicator(comm);
  Curve c;
  trainer.add_callback(&c);
  trainer.train();
  return c;
}

// The distributed step (rows offset by rank, gradients packed, summed,
// unpacked; loss and stop flag reduced; evaluation by batch then summed in
// order) at one rank must compute the very same bits as the plain step, with
// one thread and with thread replicas.
TEST(DistributedTrainer, OneRankTrainsExactlyAsWithoutCommunicator) {
  TinyRun s;
  for (int threads : {1, 2}) {
    SingleProcessCommunicator one;
    const Curve plain = train_curve(s, threads, nullptr);
    const Curve dist = train_curve(s, threads, &one);
    ASSERT_EQ(plain.loss.size(), 10u);
    ASSERT_EQ(plain.eval.size(), 2u);
    EXPECT_EQ(plain.loss, dist.loss) << threads << " threads";
    EXPECT_EQ(plain.grad_norm, dist.grad_norm) << threads << " threads";
    EXPECT_EQ(plain.eval, dist.eval) << threads << " threads";
  }
}

TEST(DistributedTrainer, StopOnOneRankEndsAfterTheStepItIsAgreedIn) {
  TinyRun s;
  auto model = s.make_model();
  Trainer trainer(*model, s.train, *s.data);
  SingleProcessCommunicator one;
  trainer.set_communicator(&one);
  struct StopAt3 : Callback {
    void on_step_end(Trainer& t, const StepMetrics& m) override {
      if (m.step == 2) t.request_stop("enough");
    }
  } stop;
  trainer.add_callback(&stop);
  const TrainSummary sum = trainer.train();
  // Requested after step 3's reduction: agreed in step 4's, which completes.
  EXPECT_EQ(sum.status, RunStatus::kStopped);
  EXPECT_EQ(sum.steps, 4);
  EXPECT_EQ(sum.message, "enough");
}

TEST(DistributedTrainer, RefusesABatchTheRanksCannotShareAndUnsafeModels) {
  TinyRun s;
  auto model = s.make_model();
  Trainer trainer(*model, s.train, *s.data);
  FakeRanks three(3);
  try {
    trainer.set_communicator(&three);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size (4) must be divisible by the number "
                                         "of ranks (3)"),
              std::string::npos)
        << e.what();
  }
  TinyRun d;
  d.model.block.dropout = 0.1;  // masks drawn in batch order: a rank's share would differ
  auto dropout_model = d.make_model();
  Trainer t2(*dropout_model, d.train, *d.data);
  FakeRanks two(2);
  try {
    t2.set_communicator(&two);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be trained data-parallel"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace bl
