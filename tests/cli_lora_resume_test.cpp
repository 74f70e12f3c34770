// `blocklab-cli train --resume` on LoRA / QLoRA runs: a fine-tune records its
// spec when it begins and writes adapter-only fine-tune checkpoints; stopped
// (or SIGKILLed) and resumed, it reproduces the uninterrupted run's losses and
// adapter bit for bit. A missing or changed base and a damaged fine-tune
// checkpoint are clear errors, and commands given a fine-tune checkpoint
// either work (sample) or say what it is. All of it on 1 and on 2 threads.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <tuple>

#include "cli_support.h"
#include "expect_error.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "lora/adapter_io.h"
#include "store/experiment_store.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH
#include "train/store_logger.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::read_bytes;
using test::run_cli;
using test::TempDir;
using test::write_bytes;

// A constant schedule keeps the lr independent of --steps, so a run stopped at
// step k and resumed to N must repeat an N-step run exactly.
constexpr const char* kFinetune =
    " --lora rank=4,alpha=8,targets=q,v,down --warmup 0 --schedule constant --batch-size 2 "
    "--seq-len 32 --checkpoint-interval 3 --json --quiet";

// (quantization of the base: "" or "nf4", threads)
class LoraResume : public ::testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  void SetUp() override {
    db_ = dir_ / "db/experiments.db";
    base_ = dir_ / "base";
    // One layer, d_model 64: run 1. On one thread with dropout (its RNG must be
    // restored too); on two without, since dropout keeps a model off the
    // data-parallel path that two threads are here to test.
    const std::string dropout = threads() == 1 ? "0.1" : "0";
    auto r =
        cli("train --preset gpt-tiny --steps 3 --set model.n_layers=1 --set model.block.d_model=64 "
            "--set model.block.d_ff=128 --set model.block.dropout=" +
            dropout + " --batch-size 2 --seq-len 32 --threads 1 --warmup 0 --quiet --out " + base_);
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  std::string quant() const { return std::get<0>(GetParam()); }
  int threads() const { return std::get<1>(GetParam()); }
  std::string threads_arg() const { return " --threads " + std::to_string(threads()); }
  test::CliResult cli(const std::string& args, bool merge_stderr = true) {
    return run_cli(args + " --db " + db_, merge_stderr);
  }
  // A fine-tune of the base (quantized as the test parameter says); its --json line.
  nlohmann::json finetune(const std::string& extra) {
    const std::string q = quant().empty() ? "" : " --quantize " + quant();
    auto r = cli("train --init-from " + base_ + kFinetune + q + threads_arg() + " " + extra, false);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line());
  }
  nlohmann::json resume(int64_t run, int64_t steps) {
    auto r = cli("train --resume " + std::to_string(run) + " --steps " + std::to_string(steps) +
                     threads_arg() + " --json --quiet",
                 false);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.last_line());
  }
  MetricSeries losses(int64_t run) {
    auto store = ExperimentStore::open_readonly(db_);
    return store.metrics(run, "loss");
  }
  // Same layers, ranks and bit-identical A and B.
  static void expect_same_adapter(const std::string& a_path, const std::string& b_path) {
    const Adapter a = read_adapter(a_path), b = read_adapter(b_path);
    ASSERT_EQ(a.layers.size(), 3u);  // q, v, down of one layer
    ASSERT_EQ(a.layers.size(), b.layers.size());
    bool trained = false;
    for (const auto& [path, la] : a.layers) {
      ASSERT_TRUE(b.layers.count(path)) << path;
      const AdapterLayer& lb = b.layers.at(path);
      EXPECT_EQ(la.rank, lb.rank) << path;
      EXPECT_EQ(la.a, lb.a) << path;
      EXPECT_EQ(la.b, lb.b) << path;
      for (float v : la.b) trained |= v != 0;  // B starts at zero
    }
    EXPECT_TRUE(trained) << "the adapters were never trained";
  }

  // A long fine-tune of the base (start_long_finetune) sent `sig` once it has
  // a checkpoint and steps past it: its wait status, -1 if it never got there.
  int signal_long_finetune(int sig, const std::string& adapter, const std::string& log);

  TempDir dir_;
  std::string db_, base_;
};

std::string case_name(const ::testing::TestParamInfo<LoraResume::ParamType>& info) {
  return std::string(std::get<0>(info.param).empty() ? "Lora" : "QLoRA") + "_" +
         std::to_string(std::get<1>(info.param)) + "threads";
}

TEST_P(LoraResume, StoppedAndResumedEqualsUninterrupted) {
  const nlohmann::json straight = finetune("--steps 9 --adapter-out " + dir_ / "straight");
  const nlohmann::json first = finetune("--steps 3 --adapter-out " + dir_ / "resumed");
  const int64_t first_id = first["run_id"];

  // The stopped run's fine-tune checkpoint: adapter tensors only, trainer state,
  // the spec, registered with its SHA-256.
  const std::string ck = first["checkpoint"];
  EXPECT_EQ(ck, run_checkpoint_dir(db_, first_id, 3));
  const SafetensorsFile weights = read_safetensors(ck + "/model.safetensors");
  EXPECT_EQ(weights.tensors.size(), 6u);  // A and B of q, v, down
  for (const auto& [name, t] : weights.tensors) EXPECT_TRUE(contains(name, ".lora_")) << name;
  EXPECT_EQ(weights.metadata.at("weights"), "trainable");
  EXPECT_TRUE(fs::exists(ck + "/optimizer.safetensors"));
  const nlohmann::json info = nlohmann::json::parse(read_bytes(ck + "/checkpoint.json"));
  EXPECT_EQ(info["step"], 3);
  EXPECT_EQ(info["trainer"]["optimizer_steps"], 3);
  EXPECT_EQ(info["finetune"]["base_checkpoint"], base_);
  EXPECT_EQ(info["finetune"]["base_sha256"], sha256_file(base_ + "/model.safetensors"));
  {
    auto store = ExperimentStore::open_readonly(db_);
    const auto cks = store.checkpoints(first_id);
    ASSERT_EQ(cks.size(), 1u);
    EXPECT_EQ(cks[0].path, ck);
    EXPECT_EQ(cks[0].sha256, sha256_file(ck + "/manifest.json"));  // lists every file's
    // Keep-last-2 like full runs: 3 registered, steps 6 and 9 left on disk.
    const auto all = store.checkpoints(straight["run_id"]);
    ASSERT_EQ(all.size(), 3u);
    EXPECT_FALSE(fs::exists(all[0].path));
    EXPECT_TRUE(fs::exists(all[1].path + "/checkpoint.json"));
    EXPECT_TRUE(fs::exists(all[2].path + "/checkpoint.json"));
  }

  const nlohmann::json resumed = resume(first_id, 9);
  EXPECT_EQ(resumed["parent_run_id"], first_id);
  EXPECT_EQ(resumed["steps"], 9);
  EXPECT_EQ(resumed["adapter"], dir_ / "resumed");
  const MetricSeries a = losses(straight["run_id"]), b = losses(first_id),
                     c = losses(resumed["run_id"]);
  ASSERT_EQ(a.size(), 9u);
  ASSERT_EQ(b.size(), 3u);
  ASSERT_EQ(c.size(), 6u);
  EXPECT_EQ(c.steps.front(), 3);
  // Bitwise: same weights, optimizer moments, data position and dropout RNG at
  // the same thread count give the very same floating-point operations.
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(b.values[i], a.values[i]) << "step " << i;
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(c.values[i], a.values[3 + i]) << "step " << 3 + i;
  expect_same_adapter(dir_ / "straight", dir_ / "resumed");

  auto store = ExperimentStore::open_readonly(db_);
  const auto run = store.get_run(resumed["run_id"]);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->tags, std::vector<std::string>{"lora"});
  EXPECT_EQ(run->summary["lora"]["rank"], 4);
  EXPECT_EQ(run->summary["lora"]["adapter"], dir_ / "resumed");
  EXPECT_EQ(run->summary["lora"]["quantize"],
            quant().empty() ? nlohmann::json() : nlohmann::json(quant()));
  EXPECT_EQ(run->summary["resumed_from"]["run"], first_id);
  EXPECT_EQ(run->summary["resumed_from"]["step"], 3);
  EXPECT_EQ(run->summary["resumed_from"]["checkpoint"], ck);
}

// A long fine-tune started in the background (stdout and stderr to log),
// returned once it has written a fine-tune checkpoint and logged 2 steps past it.
pid_t start_long_finetune(const std::string& base, const std::string& adapter,
                          const std::string& log, const std::string& db,
                          const std::string& quantize, int threads) {
  std::vector<std::string> argv = {"train",
                                   "--init-from",
                                   base,
                                   "--lora",
                                   "rank=4,alpha=8,targets=q,v,down",
                                   "--warmup",
                                   "0",
                                   "--schedule",
                                   "constant",
                                   "--batch-size",
                                   "2",
                                   "--seq-len",
                                   "32",
                                   "--threads",
                                   std::to_string(threads),
                                   "--steps",
                                   "1000000",
                                   "--checkpoint-interval",
                                   "5",
                                   "--flush-interval",
                                   "0.02",
                                   "--adapter-out",
                                   adapter,
                                   "--quiet",
                                   "--db",
                                   db};
  if (!quantize.empty()) {
    argv.push_back("--quantize");
    argv.push_back(quantize);
  }
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* f = freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    std::vector<char*> args = {const_cast<char*>(BLOCKLAB_CLI_PATH)};
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(BLOCKLAB_CLI_PATH, args.data());
    _exit(127);
  }
  // Run 2 is the fine-tune (run 1 the base): wait for a checkpoint and steps past it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (pid > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    try {
      auto store = ExperimentStore::open_readonly(db);
      const auto cks = store.checkpoints(2);
      const auto latest = store.latest_step(2);
      if (!cks.empty() && latest && *latest >= cks.front().step + 2) return pid;
    } catch (const StoreError&) {
      // Not created yet.
    }
  }
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  ADD_FAILURE() << "the fine-tune did not get far enough:\n" << read_bytes(log);
  return -1;
}

int LoraResume::signal_long_finetune(int sig, const std::string& adapter, const std::string& log) {
  fs::create_directories(dir_ / "db");
  const pid_t pid = start_long_finetune(base_, adapter, log, db_, quant(), threads());
  if (pid <= 0) return -1;
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// A real interruption: SIGKILL a fine-tune mid-run; its spec was recorded when
// it began, so it resumes from its newest fine-tune checkpoint.
TEST_P(LoraResume, SigkilledFineTuneResumes) {
  const std::string log = dir_ / "train.log", killed_adapter = dir_ / "killed";
  const int status = signal_long_finetune(SIGKILL, killed_adapter, log);
  ASSERT_NE(status, -1);
  ASSERT_TRUE(WIFSIGNALED(status)) << read_bytes(log);

  int64_t ck_step = 0;
  MetricSeries killed;
  {
    ExperimentStore store(db_);  // read-write: marks the dead run interrupted
    const auto run = store.get_run(2);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, RunStatus::kInterrupted);
    // The spec was in the run row from the start.
    EXPECT_EQ(run->summary["lora"]["base_checkpoint"], base_);
    EXPECT_EQ(run->summary["lora"]["adapter"], killed_adapter);
    const auto ck = latest_checkpoint(store, 2);
    ASSERT_TRUE(ck);
    ck_step = ck->step;
    EXPECT_EQ(ck_step % 5, 0);
    killed = store.metrics(2, "loss");
  }
  const nlohmann::json resumed = resume(2, ck_step + 4);
  EXPECT_EQ(resumed["parent_run_id"], 2);
  const nlohmann::json straight =
      finetune("--steps " + std::to_string(ck_step + 4) + " --adapter-out " + dir_ / "straight");
  const MetricSeries a = losses(straight["run_id"]), c = losses(resumed["run_id"]);
  ASSERT_EQ(c.size(), 4u);
  ASSERT_EQ(a.size(), size_t(ck_step + 4));
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(c.values[i], a.values[size_t(ck_step) + i]) << "step " << ck_step + int64_t(i);
    if (size_t(ck_step) + i < killed.size()) {  // steps the killed run logged past its checkpoint
      EXPECT_EQ(c.values[i], killed.values[size_t(ck_step) + i]) << "step " << ck_step + int64_t(i);
    }
  }
  expect_same_adapter(dir_ / "straight", killed_adapter);
  std::printf("killed after %zu logged steps; resumed from step %lld\n", killed.size(),
              (long long)ck_step);
}

// Ctrl-C: the fine-tune finishes its step, saves adapter and fine-tune
// checkpoint at that step, ends "stopped" with exit code 0, and resumes from
// exactly there.
TEST_P(LoraResume, InterruptedFineTuneStopsCleanlyAndResumes) {
  const std::string log = dir_ / "train.log", adapter = dir_ / "stopped";
  const int status = signal_long_finetune(SIGINT, adapter, log);
  ASSERT_NE(status, -1);
  ASSERT_TRUE(WIFEXITED(status)) << read_bytes(log);
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_bytes(log);
  int64_t stop_step = 0;
  {
    auto store = ExperimentStore::open_readonly(db_);
    const auto run = store.get_run(2);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, RunStatus::kStopped);
    const auto ck = latest_checkpoint(store, 2);
    ASSERT_TRUE(ck);
    stop_step = ck->step;
    // The checkpoint is the stop itself, not the last interval before it.
    EXPECT_EQ(stop_step, int64_t(store.metrics(2, "loss").size()));
  }
  EXPECT_TRUE(fs::exists(fs::path(adapter) / "adapter_config.json")) << read_bytes(log);
  EXPECT_TRUE(contains(read_bytes(log), "train --resume 2")) << read_bytes(log);
  const nlohmann::json resumed = resume(2, stop_step + 3);
  EXPECT_EQ(resumed["status"], "completed");
  EXPECT_EQ(losses(resumed["run_id"]).size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(FloatAndNF4, LoraResume,
                         ::testing::Combine(::testing::Values("", "nf4"), ::testing::Values(1, 2)),
                         case_name);

class LoraResumeErrors : public LoraResume {};

TEST_P(LoraResumeErrors, MissingChangedOrCorruptCheckpointsAreClearErrors) {
  const nlohmann::json first = finetune("--steps 3 --adapter-out " + dir_ / "ad");
  const std::string id = std::to_string(first["run_id"].get<int64_t>());
  const std::string ck = first["checkpoint"];
  auto runs = [&] { return ExperimentStore::open_readonly(db_).list_runs().size(); };
  const size_t n_runs = runs();

  // Fixed options and nothing left to do.
  auto r = cli("train --resume " + id + " --steps 6 --lora rank=2");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "--lora cannot be used with --resume")) << r.out;
  r = cli("train --resume " + id + " --steps 6 --lr 0.1");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  r = cli("train --resume " + id);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "already reached step 3 of 3")) << r.out;

  // The fine-tune checkpoint: modified weights, truncated optimizer state, broken JSON.
  const std::string weights = read_bytes(ck + "/model.safetensors");
  std::string bad = weights;
  bad[bad.size() - 3] ^= 0x55;
  write_bytes(ck + "/model.safetensors", bad);
  r = cli("train --resume " + id + " --steps 6");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, ck + "/model.safetensors: SHA-256 differs")) << r.out;
  write_bytes(ck + "/model.safetensors", weights);
  const std::string opt = read_bytes(ck + "/optimizer.safetensors");
  write_bytes(ck + "/optimizer.safetensors", opt.substr(0, 100));
  r = cli("train --resume " + id + " --steps 6");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, ck + "/optimizer.safetensors: ")) << r.out;
  write_bytes(ck + "/optimizer.safetensors", opt);
  const std::string json = read_bytes(ck + "/checkpoint.json");
  write_bytes(ck + "/checkpoint.json", json.substr(0, json.size() / 2));
  r = cli("train --resume " + id + " --steps 6");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  // Caught by its recorded SHA-256 (the manifest) before it is parsed.
  EXPECT_TRUE(contains(r.out, ck + "/checkpoint.json: SHA-256 differs")) << r.out;
  write_bytes(ck + "/checkpoint.json", json);

  // The base: changed bytes, then gone.
  const std::string base_weights = read_bytes(base_ + "/model.safetensors");
  bad = base_weights;
  bad[bad.size() - 3] ^= 0x55;
  write_bytes(base_ + "/model.safetensors", bad);
  r = cli("train --resume " + id + " --steps 6");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "base checkpoint of LoRA run " + id + ": " + base_ +
                                  "/model.safetensors: SHA-256 differs from the one recorded when "
                                  "the fine-tune began"))
      << r.out;
  write_bytes(base_ + "/model.safetensors", base_weights);

  // Other commands given the fine-tune checkpoint: sample rebuilds base +
  // adapter (the same text as the merged model), the rest say what it is.
  r = run_cli("lora merge --base " + base_ + " --adapter " + dir_ / "ad" + " --out " +
              dir_ / "merged");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string sample = " --prompt the --tokens 8 --temperature 0";
  auto from_ck = run_cli("sample --run " + ck + sample);
  EXPECT_EQ(from_ck.exit_code, 0) << from_ck.out;
  if (quant().empty()) {  // over NF4 the merged float base differs from the quantized one
    auto from_merged = run_cli("sample --run " + dir_ / "merged" + sample);
    EXPECT_EQ(from_ck.out, from_merged.out);
  }
  r = run_cli("lora merge --base " + ck + " --adapter " + dir_ / "ad" + " --out " + dir_ / "m2");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out,
                       "a fine-tune checkpoint (only the trainable LoRA adapter weights; "
                       "the frozen base model is in " +
                           base_))
      << r.out;
  r = cli("train --fork " + id + " --steps 2");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "is a LoRA fine-tune")) << r.out;
  r = cli("train --init-from " + id + " --lora rank=2 --adapter-out " + dir_ / "x");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "is a fine-tune checkpoint (adapter weights only)")) << r.out;

  fs::remove_all(base_);
  r = cli("train --resume " + id + " --steps 6");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(
      r.out, "the base checkpoint of LoRA run " + id + ", " + base_ + ", no longer exists"))
      << r.out;
  r = run_cli("sample --run " + ck);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "base of fine-tune checkpoint " + ck)) << r.out;
  EXPECT_EQ(runs(), n_runs);  // refused resumes and forks record no run
}

INSTANTIATE_TEST_SUITE_P(FloatAndNF4, LoraResumeErrors,
                         ::testing::Combine(::testing::Values("", "nf4"), ::testing::Values(1, 2)),
                         case_name);

}  // namespace
}  // namespace bl
