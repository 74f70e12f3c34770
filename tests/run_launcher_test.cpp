// The run launcher (engine/run/): every check comes before the corpus is read,
// a tensor allocated or a run row created, and names the field and the rule;
// a valid spec becomes a run recorded from the spec alone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

#include "run/config_overrides.h"
#include "run/launcher.h"
#include "run/memory_estimate.h"
#include "temp_files.h"

using namespace bl;

namespace {

/// gpt-tiny cut to 2 narrow layers: a launch that trains in milliseconds.
RunSpec tiny_spec(const test::TempDir& dir) {
  RunSpec s;
  s.preset_name = "gpt-tiny";
  s.set = {"model.n_layers=2", "model.block.d_model=32", "model.block.d_ff=64",
           "train.eval_interval=0", "train.eval_batches=1"};
  s.train.max_steps = 3;
  s.train.warmup_steps = 0;
  s.train.batch_size = 2;
  s.train.seq_len = 16;
  s.train.threads = 1;
  s.data_path = dir / "data.txt";
  test::write_bytes(s.data_path, std::string(4000, 'a') + "bcdefgh\n");
  s.db_path = dir / "experiments.db";
  return s;
}

/// What launch_run(spec) threw, with a FIFO as the corpus: a launch that read
/// the data before checking would block on it, so the call runs on a thread
/// and, if it is still blocked after 30 s, the FIFO is opened for writing and
/// closed to release it (and the test fails).
std::string launch_error(const RunSpec& spec, const std::string& fifo) {
  auto f = std::async(std::launch::async, [&spec]() -> std::string {
    try {
      launch_run(spec);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  });
  if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    const int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) close(fd);
    ADD_FAILURE() << "launch_run blocked reading the FIFO before checking the spec";
  }
  return f.get();
}

size_t run_count(const std::string& db) {
  return ExperimentStore::open_readonly(db).list_runs().size();
}

}  // namespace

TEST(RunLauncher, InvalidSpecsFailBeforeAnyDataIsRead) {
  test::TempDir dir;
  const std::string fifo = dir / "corpus.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  struct Case {
    std::vector<std::string> set;
    std::string expected;
  };
  const Case cases[] = {
      {{"model.block.d_model=1000000000"}, "model.block.d_model (1000000000) must be <= 65536"},
      {{"model.n_layers=1000000"}, "model.n_layers (1000000) must be <= 4096"},
      {{"train.eval_batches=1000000000000"}, "train.eval_batches (1000000000000) must be <= 65536"},
      {{"train.grad_accumulation_steps=1000000000"},
       "train.grad_accumulation_steps (1000000000) must be <= 65536"},
      {{"model.block.d_ff=1e9"}, "model.block.d_ff"},
      {{"model.block.no_such_field=3"}, "no_such_field"},
      // Within every limit, but 65536 wide x 4096 deep is petabytes of weights.
      {{"model.block.d_model=65536", "model.block.n_heads=64", "model.block.n_kv_heads=64",
        "model.n_layers=4096"},
       "memory: training this model needs about"},
  };
  for (const Case& c : cases) {
    RunSpec s = tiny_spec(dir);
    s.data_path = fifo;
    s.set.insert(s.set.end(), c.set.begin(), c.set.end());
    const auto t0 = std::chrono::steady_clock::now();
    const std::string err = launch_error(s, fifo);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(err.find(c.expected), std::string::npos) << "got: " << err;
    EXPECT_LT(secs, 10.0) << c.expected << ": the error took " << secs << " s";
  }
  // A valid config with the FIFO as its corpus: refused by the file check, unread.
  RunSpec s = tiny_spec(dir);
  s.data_path = fifo;
  const std::string fifo_err = launch_error(s, fifo);
  EXPECT_NE(fifo_err.find("is not a regular file"), std::string::npos) << fifo_err;
  EXPECT_NE(fifo_err.find(fifo), std::string::npos) << fifo_err;
  s.data_path = dir / "missing.txt";
  EXPECT_NE(launch_error(s, fifo).find("text file not found: " + s.data_path), std::string::npos);
  s.data_path = dir.path();
  EXPECT_NE(launch_error(s, fifo).find("is a directory"), std::string::npos);
  EXPECT_EQ(run_count(s.db_path), 0u);  // no failed launch created a run row
}

TEST(RunLauncher, MemoryEstimateAgainstTheMachine) {
  test::TempDir dir;
  RunSpec s = tiny_spec(dir);
  const Preset p = apply_set_overrides(load_preset("gpt-tiny"), s.set);
  const MemoryEstimate e = estimate_training_memory(p.model, p.train);
  EXPECT_GT(e.weight_bytes, 0);
  EXPECT_DOUBLE_EQ(e.optimizer_bytes, 2 * e.gradient_bytes);  // AdamW: two moments
  EXPECT_GT(machine_memory_bytes(), int64_t(64) << 20);
  EXPECT_TRUE(memory_errors(e, machine_memory_bytes()).empty());
  // A machine of 1 MB (the override shared hosts and tests use) cannot train
  // gpt-tiny (13 MB of weights, gradients and AdamW moments).
  s.set.clear();
  setenv("BLOCKLAB_MEMORY_LIMIT_MB", "1", 1);
  std::string err;
  try {
    launch_run(s);
  } catch (const ConfigError& ex) {
    err = ex.what();
  }
  unsetenv("BLOCKLAB_MEMORY_LIMIT_MB");
  EXPECT_NE(err.find("this machine has 0.00 GB of RAM"), std::string::npos) << err;
}

TEST(RunLauncher, RecordNamesWhatWasTrainedFromTheSpec) {
  test::TempDir dir;
  RunSpec s = tiny_spec(dir);
  s.tags = {"x"};
  auto run = launch_run(s);
  EXPECT_EQ(run->run_id(), 0);  // no row before begin()
  const TrainSummary sum = run->train();
  EXPECT_EQ(sum.status, RunStatus::kCompleted);
  ExperimentStore store = ExperimentStore::open_readonly(s.db_path);
  const RunRecord r = *store.get_run(run->run_id());
  EXPECT_EQ(r.preset, "gpt-tiny");
  EXPECT_EQ(r.name, "gpt-tiny");
  EXPECT_EQ(r.model_config["n_layers"], 2);
  EXPECT_EQ(r.model_config["vocab_size"], run->tokenizer().vocab_size());
  EXPECT_EQ(r.tokenizer["type"], "char");
  EXPECT_EQ(r.tags, std::vector<std::string>{"x"});
  EXPECT_EQ(store.checkpoints(r.id).size(), 1u);  // the final checkpoint

  // A composed config (the workbench's) keeps the preset name it is given.
  RunSpec c = tiny_spec(dir);
  c.config = apply_set_overrides(load_preset("llama-tiny"), c.set);
  c.set.clear();
  c.preset_name = "llama-tiny";
  auto composed = launch_run(c);
  composed->train();
  EXPECT_EQ(store.get_run(composed->run_id())->preset, "llama-tiny");

  // Resume continues from the final checkpoint with more steps.
  RunSpec r2;
  r2.kind = RunKind::kResume;
  r2.parent_run_id = r.id;
  r2.db_path = s.db_path;
  r2.train.max_steps = 5;
  auto resumed = launch_run(r2);
  EXPECT_EQ(resumed->trainer().step(), 3);
  EXPECT_EQ(resumed->train().steps, 5);
  EXPECT_EQ(store.get_run(resumed->run_id())->parent_run_id, r.id);
  // ... and refuses to change what the run computes.
  r2.train.learning_rate = 1e-3;
  try {
    launch_run(r2);
    ADD_FAILURE() << "a resume changed the learning rate";
  } catch (const RunSpecError& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rate cannot change"), std::string::npos);
  }
}

// Every launched run records system metrics and, at its interval, diagnostics.
TEST(RunLauncher, SystemMetricsAndDiagnosticsAreStored) {
  test::TempDir dir;
  RunSpec s = tiny_spec(dir);
  s.train.max_steps = 4;
  s.set.push_back("train.diagnostics_interval=2");
  auto run = launch_run(s);
  run->train();
  ExperimentStore store = ExperimentStore::open_readonly(s.db_path);
  const int64_t id = run->run_id();
  for (const char* n : {"sys/rss_mb", "sys/threads", "sys/cpu_percent"}) {
    const MetricSeries m = store.metrics(id, n);
    ASSERT_GE(m.size(), 2u) << n;  // the first and the last step at least
    EXPECT_EQ(m.steps.front(), 0) << n;
    EXPECT_EQ(m.steps.back(), 3) << n;
  }
  for (double v : store.metrics(id, "sys/rss_mb").values) EXPECT_GT(v, 1.0);
  for (double v : store.metrics(id, "sys/threads").values) EXPECT_GE(v, 1.0);
  for (const char* n : {"diag/grad_norm/layers.1", "diag/weight_norm/embed_tokens",
                        "diag/update_ratio/layers.0", "diag/eff_rank/layers.0.attention.q_proj"}) {
    const MetricSeries m = store.metrics(id, n);
    EXPECT_EQ(m.steps, (std::vector<int64_t>{1, 3})) << n;
    for (double v : m.values) EXPECT_GT(v, 0.0) << n;
  }
  // Off: no diag/ metric at all.
  RunSpec off = tiny_spec(dir);
  off.set.push_back("train.diagnostics_interval=0");
  auto quiet = launch_run(off);
  quiet->train();
  for (const std::string& n : store.metric_names(quiet->run_id()))
    EXPECT_NE(n.rfind("diag/", 0), 0u) << n;
}

namespace bl {
namespace {

// `train --preset gpt-tiny --steps 10`: the preset's 20 warm-up steps shrink
// to a tenth of the run, with a note; an explicit conflicting warm-up is an error.
TEST(RunLauncher, PresetWarmupShrinksToFitAShortRun) {
  RunSpec s;
  s.preset_name = "gpt-tiny";
  s.train.max_steps = 10;
  const RunPlan p = plan_run(s, nullptr);
  EXPECT_EQ(p.preset.train.warmup_steps, 1);
  ASSERT_FALSE(p.notes.empty());
  EXPECT_NE(p.notes.back().find("warmup_steps 20 > max_steps 10: shrunk to 1"), std::string::npos);
  s.train.warmup_steps = 20;
  EXPECT_THROW(plan_run(s, nullptr), ConfigError);
  s.train.warmup_steps.reset();
  s.set = {"train.warmup_steps=20"};
  EXPECT_THROW(plan_run(s, nullptr), ConfigError);
  s.set.clear();
  s.train.max_steps = 400;  // fits: unchanged
  EXPECT_EQ(plan_run(s, nullptr).preset.train.warmup_steps, 20);
}

}  // namespace
}  // namespace bl
