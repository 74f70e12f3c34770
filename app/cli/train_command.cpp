#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "io/sha256.h"
#include "setup.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"
#include "train/trainer.h"

namespace bl::cli {

namespace {

/// One live status line (step, loss, tok/s, ETA), redrawn in place on a
/// terminal, printed every log_interval steps otherwise.
class ProgressPrinter : public Callback {
 public:
  ProgressPrinter(int64_t max_steps, int64_t log_interval, bool quiet)
      : max_steps_(max_steps),
        interval_(log_interval > 0 ? log_interval : 10),
        quiet_(quiet),
        tty_(isatty(fileno(stderr))) {}

  void on_step_end(Trainer& t, const StepMetrics& m) override {
    ema_tps_ = ema_tps_ == 0 ? m.tokens_per_sec : 0.9 * ema_tps_ + 0.1 * m.tokens_per_sec;
    if (quiet_) return;
    const int64_t done = m.step + 1;
    const double eta =
        ema_tps_ > 0 ? double(max_steps_ - done) * double(t.tokens_per_step()) / ema_tps_ : 0;
    char line[256];
    std::snprintf(line, sizeof line,
                  "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.2f | %.0f tok/s | ETA %s",
                  (long long)done, (long long)max_steps_, m.loss, m.learning_rate, m.grad_norm,
                  ema_tps_, format_eta(eta).c_str());
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line);
      if (m.eval_loss) std::fprintf(stderr, "\r\033[K%s | eval_loss %.4f\n", line, *m.eval_loss);
    } else if (done % interval_ == 0 || done == max_steps_ || m.eval_loss) {
      std::fprintf(stderr, "%s", line);
      if (m.eval_loss) std::fprintf(stderr, " | eval_loss %.4f", *m.eval_loss);
      std::fprintf(stderr, "\n");
    }
    std::fflush(stderr);
  }
  void on_train_end(Trainer&, const TrainSummary&) override {
    if (tty_ && !quiet_) std::fprintf(stderr, "\n");
  }

 private:
  static std::string format_eta(double s) {
    char buf[32];
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60)
      std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else
      std::snprintf(buf, sizeof buf, "%ds", int(s));
    return buf;
  }
  int64_t max_steps_, interval_;
  bool quiet_, tty_;
  double ema_tps_ = 0;
};

/// Options that would change what a resumed run computes.
const char* const kFixedOnResume[] = {"preset", "config",    "data",       "tokenizer",
                                      "seed",   "lr",        "batch-size", "seq-len",
                                      "warmup", "optimizer", "schedule",   "set"};
/// Options that start a fine-tune (lora_command.cpp); a resumed one keeps its own.
const char* const kFinetuneOptions[] = {"init-from", "lora", "quantize", "adapter-out"};

RunRecord get_run_or_throw(ExperimentStore& store, int64_t id) {
  auto run = store.get_run(id);
  if (!run)
    throw std::runtime_error(store.path() + ": no run with id " + std::to_string(id) +
                             " (see blocklab-cli runs list)");
  return *run;
}

std::string read_run_dataset(const RunRecord& run, const std::string& path) {
  try {
    return read_text_file(path);
  } catch (const std::exception& e) {
    throw std::runtime_error("dataset of run " + std::to_string(run.id) + ": " + e.what());
  }
}

}  // namespace

void check_resume_options(const RunRecord& run, const Args& args) {
  for (const char* opt : kFixedOnResume)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed run keeps its configuration); "
                       "use --fork " +
                       std::to_string(run.id) + " --set ... for a changed copy");
  for (const char* opt : kFinetuneOptions)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed fine-tune keeps the base, LoRA "
                       "spec, quantization and adapter path it began with)");
  if (args.flag("fresh")) throw UsageError("--fresh applies to --fork, not --resume");
  // Runs of dead processes were marked interrupted when the store was opened.
  if (run.status == RunStatus::kRunning)
    throw std::runtime_error("run " + std::to_string(run.id) + " is still running (pid " +
                             std::to_string(run.pid) + " on " + run.host +
                             "); stop it before resuming it");
}

CheckpointRecord checkpoint_to_resume(ExperimentStore& store, const RunRecord& run) {
  auto ck = latest_checkpoint(store, run.id);
  if (!ck) {
    const size_t n = store.checkpoints(run.id).size();
    throw std::runtime_error(
        "run " + std::to_string(run.id) + " has no checkpoint to resume from" +
        (n ? " (its " + std::to_string(n) + " recorded checkpoint(s) no longer exist on disk)"
           : " (it stopped before its first checkpoint; see --checkpoint-interval)"));
  }
  verify_checkpoint(ck->path, ck->sha256);  // every file, when it has a manifest
  return *ck;
}

std::string read_resume_dataset(const RunRecord& run, bool quiet) {
  const std::string text = read_run_dataset(run, run.dataset_path);
  if (!run.dataset_sha256.empty() && sha256_hex(text) != run.dataset_sha256 && !quiet)
    std::fprintf(stderr,
                 "warning: %s changed since run %lld was recorded (SHA-256 differs); the resumed "
                 "run will not reproduce the original\n",
                 run.dataset_path.c_str(), (long long)run.id);
  return text;
}

namespace {

/// Resume: config, tokenizer and weights from the run's newest checkpoint
/// (check_resume_options has been applied).
std::string setup_resume(ExperimentStore& store, const RunRecord& run, const Args& args,
                         RunSetup& s, bool quiet) {
  const CheckpointRecord ck = checkpoint_to_resume(store, run);
  CheckpointInfo info = read_checkpoint_info(ck.path);
  if (!info.finetune.is_null())
    throw CheckpointError(ck.path + " is a fine-tune checkpoint, but run " +
                          std::to_string(run.id) +
                          " has no recorded fine-tune spec to rebuild its base from");
  s.preset.model = info.model;
  s.preset.train = info.train;
  s.preset_name = run.preset;
  apply_train_overrides(args, s.preset.train);  // only --steps, --threads, --eval-interval remain
  validate(s.preset.train);
  if (info.step >= s.preset.train.max_steps)
    throw UsageError("run " + std::to_string(run.id) + " already reached step " +
                     std::to_string(info.step) + " of " + std::to_string(s.preset.train.max_steps) +
                     "; pass --steps N (N > " + std::to_string(info.step) +
                     ") to train it further");
  s.tokenizer = tokenizer_from_json(info.tokenizer);
  s.data_path = run.dataset_path;
  const std::string text = read_resume_dataset(run, quiet);
  build_data_and_model(s, text, false);
  load_model_weights(ck.path, *s.model);
  return ck.path;
}

/// Fork: the run's config with overrides, weights from its newest checkpoint.
std::string setup_fork(ExperimentStore& store, const RunRecord& run, const Args& args, RunSetup& s,
                       bool quiet) {
  if (args.get("preset") || args.get("config"))
    throw UsageError("--fork takes the configuration of run " + std::to_string(run.id) +
                     "; change it with --set field=value instead of --preset/--config");
  Preset base;
  try {
    base = preset_from_json({{"model", run.model_config}, {"train", run.train_config}});
  } catch (const ConfigError& e) {
    throw std::runtime_error("the stored config of run " + std::to_string(run.id) +
                             " is invalid: " + e.what());
  }
  s.preset = apply_set_overrides(base, args.all("set"));
  apply_train_overrides(args, s.preset.train);
  validate(s.preset.train);
  s.preset_name = run.preset;
  s.data_path = args.get("data").value_or(run.dataset_path);
  const std::string text =
      args.get("data") ? read_text_file(s.data_path) : read_run_dataset(run, s.data_path);
  if (auto tok = args.get("tokenizer")) {
    s.tokenizer = make_tokenizer(*tok, text);
  } else {
    try {
      s.tokenizer = tokenizer_from_json(run.tokenizer);
    } catch (const std::exception& e) {
      throw std::runtime_error("the stored tokenizer of run " + std::to_string(run.id) +
                               " is invalid: " + e.what());
    }
  }
  try {
    build_data_and_model(s, text, true);
  } catch (const std::invalid_argument& e) {
    if (dynamic_cast<const ConfigError*>(&e)) throw;
    throw std::runtime_error(s.data_path + ": cannot be encoded with run " +
                             std::to_string(run.id) + "'s tokenizer (" + e.what() +
                             "); pass --tokenizer to build a new one");
  }
  if (args.flag("fresh")) return "";
  auto ck = latest_checkpoint(store, run.id);
  if (ck && !read_checkpoint_info(ck->path).finetune.is_null())
    throw std::runtime_error("run " + std::to_string(run.id) +
                             " is a LoRA fine-tune: its checkpoints hold only adapter weights, so "
                             "a fork cannot start from them; fork its base run, or add --fresh "
                             "for newly initialised weights");
  if (!ck) {
    if (!quiet)
      std::fprintf(stderr, "note: run %lld has no checkpoint; the fork starts from fresh weights\n",
                   (long long)run.id);
    return "";
  }
  try {
    load_model_weights(ck->path, *s.model);
  } catch (const CheckpointError& e) {
    throw CheckpointError(std::string(e.what()) +
                          "; the overrides changed the model's shapes: add --fresh to start the "
                          "fork from newly initialised weights");
  }
  return ck->path;
}

std::string default_run_name(const Args& args, const RunSetup& s) {
  if (!s.preset_name.empty()) return s.preset_name;
  if (auto c = args.get("config")) return std::filesystem::path(*c).stem().string();
  return s.preset.model.name;
}

}  // namespace

int train_command(const std::vector<std::string>& argv) {
  // LoRA / QLoRA fine-tuning of a checkpoint: lora_command.cpp (a resume is
  // dispatched below, once the run shows whether it is a fine-tune).
  const bool has_resume = std::find(argv.begin(), argv.end(), "--resume") != argv.end();
  for (const std::string& a : argv)
    for (const char* o : kFinetuneOptions)
      if (!has_resume && a == "--" + std::string(o)) return lora_train_command(argv);
  auto value_opts = run_value_options();
  for (const char* o : {"out", "db", "name", "tag", "resume", "fork", "set", "flush-interval",
                        "checkpoint-interval", "keep-checkpoints"})
    value_opts.insert(o);
  for (const char* o : kFinetuneOptions) value_opts.insert(o);  // rejected by check_resume_options
  Args args(argv, value_opts, {"json", "quiet", "fresh"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const bool quiet = args.flag("quiet");
  const auto resume = args.get("resume"), fork = args.get("fork");
  if (resume && fork) throw UsageError("give --resume or --fork, not both");
  if (args.flag("fresh") && !fork) throw UsageError("--fresh only applies to --fork");
  StoreOptions store_opt;
  if (auto v = args.get_double("flush-interval")) {
    if (*v < 0) throw UsageError("--flush-interval must be >= 0 seconds");
    store_opt.flush_interval_s = *v;
  }
  const auto ckpt_interval = args.get_int("checkpoint-interval", 0);
  const auto keep = args.get_int("keep-checkpoints", 0);

  // Open the database first: a bad --db fails before any data is loaded.
  ExperimentStore store(args.get("db").value_or(default_db_path()), store_opt);
  RunSetup s;
  RunRecord rec;
  std::string resume_dir, fork_dir;
  std::optional<RunRecord> parent;
  if (resume) {
    parent = get_run_or_throw(store, parse_run_id(*resume, "--resume"));
    check_resume_options(*parent, args);
    if (!args.get("steps")) {  // killed after its final checkpoint: finish it from there
      const CheckpointRecord ck = checkpoint_to_resume(store, *parent);
      const nlohmann::json sum = finish_from_final_checkpoint(store, *parent, ck);
      if (!sum.is_null()) {
        std::printf(
            "run %lld had reached its last step (%lld) before its process ended; marked "
            "completed from its final checkpoint %s\n",
            (long long)parent->id, (long long)ck.step, ck.path.c_str());
        if (args.flag("json")) std::printf("%s\n", sum.dump().c_str());
        return 0;
      }
    }
    if (is_finetune_run(*parent)) return lora_resume_command(store, *parent, args);
    resume_dir = setup_resume(store, *parent, args, s, quiet);
    rec.name = parent->name;
    rec.tags = parent->tags;
  } else if (fork) {
    parent = get_run_or_throw(store, parse_run_id(*fork, "--fork"));
    fork_dir = setup_fork(store, *parent, args, s, quiet);
    rec.name = parent->name + " (fork)";
  } else {
    s = make_run_setup(args);
    rec.name = default_run_name(args, s);
  }
  // Recorded in the run's config (and inherited by a resume); does not change the computation.
  if (ckpt_interval) s.preset.train.checkpoint_interval = *ckpt_interval;
  const TrainConfig& tc = s.preset.train;
  if (auto n = args.get("name")) rec.name = *n;
  for (const std::string& t : args.all("tag")) rec.tags.push_back(t);
  const DatasetFingerprint fp = fingerprint_dataset(s.data_path);
  rec.preset = s.preset_name;
  rec.dataset_path = fp.path;
  rec.dataset_size = fp.size;
  rec.dataset_sha256 = fp.sha256;
  rec.tokenizer = s.tokenizer->to_json();
  if (parent) rec.parent_run_id = parent->id;

  Trainer trainer(*s.model, tc, *s.data);
  if (!resume_dir.empty()) load_trainer_state(resume_dir, trainer);
  StoreLogger logger(store, rec);
  if (resume)
    logger.summary_extra()["resumed_from"] = {
        {"run", parent->id}, {"step", trainer.step()}, {"checkpoint", resume_dir}};
  if (fork)
    logger.summary_extra()["forked_from"] = {
        {"run", parent->id},
        {"checkpoint", fork_dir.empty() ? nlohmann::json() : nlohmann::json(fork_dir)},
        {"set", args.all("set")}};
  CheckpointPolicy policy;
  policy.interval = tc.checkpoint_interval;
  policy.keep_last = int(keep.value_or(2));
  CheckpointSaver saver(
      *s.tokenizer, policy,
      [&](int64_t step) { return run_checkpoint_dir(store.path(), logger.run_id(), step); },
      [&](int64_t step, const std::string& dir) { logger.add_checkpoint(step, dir); });
  ProgressPrinter progress(tc.max_steps, tc.log_interval, quiet);
  // Order matters at the end: the final checkpoint is registered before the run is finished.
  trainer.add_callback(&saver);
  trainer.add_callback(&logger);
  trainer.add_callback(&progress);
  const int64_t run_id = logger.begin(trainer);
  if (!quiet) {
    std::fprintf(stderr,
                 "blocklab: %s | %lld params | %s tokenizer (vocab %lld) | data %s (%lld train / "
                 "%lld val tokens) | %lld steps x %lld tokens\n",
                 s.preset_name.empty() ? "config" : s.preset_name.c_str(),
                 (long long)s.model->num_parameters(), s.tokenizer->name().c_str(),
                 (long long)s.tokenizer->vocab_size(), s.data_path.c_str(),
                 (long long)s.data->train_size(), (long long)s.data->val_size(),
                 (long long)tc.max_steps, (long long)trainer.tokens_per_step());
    std::fprintf(stderr, "run %lld recorded in %s", (long long)run_id, store.path().c_str());
    if (resume)
      std::fprintf(stderr, " (resumes run %lld from step %lld)", (long long)parent->id,
                   (long long)trainer.step());
    if (fork)
      std::fprintf(stderr, " (fork of run %lld%s)", (long long)parent->id,
                   fork_dir.empty() ? ", fresh weights" : "");
    std::fprintf(stderr, "\n");
  }
  const TrainSummary sum = train_recorded(trainer, logger);

  std::printf("%s after %lld steps: train loss %.4f (mean of last 10)", to_string(sum.status),
              (long long)sum.steps, sum.final_train_loss);
  if (sum.val_loss) std::printf(", val loss %.4f", *sum.val_loss);
  std::printf(", %.0f tok/s, median step %.1f ms, %.1f s\n", sum.tokens_per_sec, sum.median_step_ms,
              sum.elapsed_s);
  if (!sum.message.empty()) std::printf("%s\n", sum.message.c_str());
  std::printf("run %lld recorded in %s", (long long)run_id, store.path().c_str());
  if (sum.status == RunStatus::kStopped && saver.last_step())
    std::printf(" (continue with: blocklab-cli train --resume %lld)", (long long)run_id);
  std::printf("\n");
  if (auto out = args.get("out")) {
    save_checkpoint(*out, *s.model, tc, *s.tokenizer, &trainer);
    std::printf("checkpoint saved to %s (sample with: blocklab-cli sample --run %s)\n",
                out->c_str(), out->c_str());
  }
  if (args.flag("json")) {
    nlohmann::json j = {
        {"status", to_string(sum.status)},
        {"steps", sum.steps},
        {"final_train_loss", sum.final_train_loss},
        {"val_loss", sum.val_loss ? nlohmann::json(*sum.val_loss) : nlohmann::json()},
        {"best_val_loss",
         sum.best_val_loss ? nlohmann::json(*sum.best_val_loss) : nlohmann::json()},
        {"tokens_per_sec", sum.tokens_per_sec},
        {"median_step_ms", sum.median_step_ms},
        {"elapsed_s", sum.elapsed_s},
        {"params", sum.params},
        {"flops_per_token", s.model->flops_per_token(tc.seq_len)},
        {"preset", s.preset_name},
        {"seed", tc.seed},
        {"threads", tc.threads},
        {"run_id", run_id},
        {"db", store.path()},
        {"parent_run_id", parent ? nlohmann::json(parent->id) : nlohmann::json()},
        {"checkpoint",
         saver.last_dir().empty() ? nlohmann::json() : nlohmann::json(saver.last_dir())},
        {"logging_overhead_pct",
         logger.step_time_ms() > 0 ? 100.0 * logger.overhead_ms() / logger.step_time_ms() : 0.0}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return sum.status == RunStatus::kCompleted || sum.status == RunStatus::kStopped ? 0 : 3;
}

}  // namespace bl::cli
