// A warmed-up training step performs no heap allocation: every C++ allocation
// is counted (global operator new), and steps after warm-up must add none.
// (Eigen's and OpenBLAS's internal GEMM workspaces use malloc directly and are
// reused by glibc; the CLI bench shows RSS flat over 1000 steps for those.)
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>

#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "train/diagnostics.h"
#include "train/system_metrics.h"
#include "train/trainer.h"

namespace {
std::atomic<int64_t> g_news{0};
std::atomic<bool> g_trap{false};  // debugging aid: abort on the first counted allocation
}  // namespace

void* operator new(size_t n) {
  ++g_news;
  if (g_trap && std::getenv("BLOCKLAB_TRAP_ALLOC")) __builtin_trap();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  ++g_news;
  if (g_trap && std::getenv("BLOCKLAB_TRAP_ALLOC")) __builtin_trap();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}

namespace bl {
namespace {

class AllocCounter : public Callback {
 public:
  std::vector<int64_t> at_step_end;
  AllocCounter() { at_step_end.reserve(64); }
  void on_step_end(Trainer&, const StepMetrics& m) override {
    at_step_end.push_back(g_news.load());
    g_trap = m.step >= 3;
  }
};

void expect_no_allocations(const std::string& attention, const std::string& ffn,
                           const std::string& norm, const std::string& position,
                           const std::string& optimizer,
                           const std::function<void(ModelConfig&)>& tweak = {},
                           Communicator* comm = nullptr, bool distill = false) {
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "all the world's a stage, and all the men and women merely players. ";
  auto tok = make_tokenizer("char", text);
  TextDataset data(text, *tok, 0.1);
  ModelConfig m;
  m.vocab_size = tok->vocab_size();
  m.n_layers = 2;
  m.block.attention = attention;
  m.block.ffn = ffn;
  m.block.norm = norm;
  m.block.position = position;
  m.block.d_model = 64;
  m.block.n_heads = 4;
  if (attention == "gqa") m.block.n_kv_heads = 2;
  m.block.d_ff = 128;
  m.block.max_seq_len = 64;
  if (tweak) tweak(m);
  TrainConfig t;
  t.seq_len = 64;
  t.batch_size = 4;
  t.max_steps = 12;
  t.warmup_steps = 2;
  t.eval_interval = 0;
  t.eval_batches = 1;
  t.grad_accumulation_steps = 2;
  t.optimizer = optimizer;
  t.threads = 2;
  LanguageModel model(m);
  Rng rng(1);
  model.init_weights(rng);
  Trainer trainer(model, t, data);
  trainer.set_communicator(comm);
  // Distillation: the teacher's forward (no grad) and the KL buffers come
  // from the graph's arena like everything else.
  LanguageModel teacher(m);
  if (distill) {
    Rng trng(2);
    teacher.init_weights(trng);
    trainer.set_teacher(&teacher, 2.0f, 0.5f);
  }
  AllocCounter counter;
  trainer.add_callback(&counter);
  trainer.train();
  g_trap = false;
  ASSERT_EQ(counter.at_step_end.size(), 12u);
  // Steps 4..11 (after 3 warm-up steps) allocate nothing.
  EXPECT_EQ(counter.at_step_end[11] - counter.at_step_end[3], 0)
      << attention << "/" << ffn << "/" << norm << "/" << position << "/" << optimizer;
}

TEST(Allocation, WarmTrainingStepAllocatesNothing) {
  expect_no_allocations("mha", "standard", "layer_norm", "learned", "adamw");
  expect_no_allocations("gqa", "gated", "rms_norm", "rope", "adamw");
  expect_no_allocations("mha", "gated", "layer_norm", "alibi", "lion");
  expect_no_allocations("gqa", "standard", "rms_norm", "sinusoidal", "adafactor");
  expect_no_allocations("mha", "standard", "layer_norm", "none", "sgd");
  expect_no_allocations("gated_deltanet", "gated", "rms_norm", "none", "adamw");
  // Aux losses and per-expert metrics reuse their storage step after step.
  auto experts = [](ModelConfig& m) {
    m.block.n_experts = 4;
    m.block.moe_d_ff = 64;
  };
  expect_no_allocations("gqa", "moe", "rms_norm", "rope", "adamw", experts);
  expect_no_allocations("gqa", "shared_moe", "rms_norm", "rope", "adamw", [&](ModelConfig& m) {
    experts(m);
    m.block.n_shared_experts = 1;
    m.block.moe_n_groups = 2;
  });
  expect_no_allocations("mha", "gated", "rms_norm", "rope", "adamw",
                        [](ModelConfig& m) { m.mtp_n_predict = 2; });
  expect_no_allocations("mamba2", "none", "rms_norm", "none", "adamw", [](ModelConfig& m) {
    m.block.mamba_head_dim = 32;
    m.block.mamba_n_heads = 4;
    m.block.ssm_state_size = 16;
    m.block.mamba_chunk_size = 16;
  });
}

TEST(Allocation, WarmDistillationStepAllocatesNothing) {
  expect_no_allocations("mha", "standard", "layer_norm", "learned", "adamw", {}, nullptr, true);
  expect_no_allocations(
      "gqa", "moe", "rms_norm", "rope", "adamw",
      [](ModelConfig& m) {
        m.block.n_experts = 4;
        m.block.moe_d_ff = 64;
      },
      nullptr, true);
}

// The distributed step (gradients packed into the flat buffer, reduced,
// unpacked; loss and stop flag reduced) reuses its buffers too.
TEST(Allocation, WarmDistributedStepAllocatesNothing) {
  SingleProcessCommunicator one;
  expect_no_allocations("mha", "standard", "layer_norm", "learned", "adamw", {}, &one);
}

// With system metrics sampled every step and diagnostics every 4th step,
// steps other than the diagnostics steps still allocate nothing (those run
// SVDs and name their metrics, every interval steps only).
TEST(Allocation, SystemMetricsAndDiagnosticsKeepOtherStepsFree) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "all the world's a stage, and all the men and women. ";
  auto tok = make_tokenizer("char", text);
  TextDataset data(text, *tok, 0.1);
  ModelConfig m;
  m.vocab_size = tok->vocab_size();
  m.n_layers = 2;
  m.block.d_model = 64;
  m.block.n_heads = 4;
  m.block.d_ff = 128;
  m.block.max_seq_len = 64;
  TrainConfig t;
  t.seq_len = 64;
  t.batch_size = 4;
  t.max_steps = 12;
  t.warmup_steps = 2;
  t.eval_interval = 0;
  t.eval_batches = 1;
  t.threads = 2;
  LanguageModel model(m);
  Rng rng(1);
  model.init_weights(rng);
  Trainer trainer(model, t, data);
  SystemMetrics sys(0.0);  // samples every step
  Diagnostics diag(4);     // steps 3, 7, 11
  AllocCounter counter;
  trainer.add_callback(&sys);
  trainer.add_callback(&diag);
  trainer.add_callback(&counter);
  trainer.train();
  g_trap = false;
  ASSERT_EQ(counter.at_step_end.size(), 12u);
  EXPECT_EQ(sys.samples(), 12);
  for (int64_t s = 4; s < 12; ++s) {
    const int64_t n = counter.at_step_end[size_t(s)] - counter.at_step_end[size_t(s - 1)];
    if (diag.due(s))
      EXPECT_GT(n, 0) << "step " << s << ": diagnostics ran (names, SVD workspaces)";
    else
      EXPECT_EQ(n, 0) << "step " << s;
  }
}

}  // namespace
}  // namespace bl
