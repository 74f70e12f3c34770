// A plain description of one training run, filled by the CLI's `train` from
// its arguments and by the workbench from its widgets, and turned into a
// ready-to-train run by launch_run (run/launcher.h). No Qt, no store handles:
// everything here is a value a sweep or an MPI rank could build as well.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/presets.h"
#include "lora/finetune.h"
#include "store/experiment_store.h"
#include "train/grpo.h"

namespace bl {

enum class RunKind {
  kFresh,       // a preset or config (+ overrides), newly initialised weights
  kResume,      // continue a stored run from its newest checkpoint
  kFork,        // a stored run's config (+ overrides), weights from its newest checkpoint
  kFinetune,    // LoRA / QLoRA adapters on a stored run's or directory's checkpoint
  kDistill,     // a fresh student (preset or config) trained on a teacher checkpoint's logits
  kPreference,  // DPO: a stored model trained on preference pairs against its own start
  kGrpo,        // GRPO: a stored model trained on rewards of its own sampled completions
};

/// Train-config fields a run may override after the config is chosen (the CLI's
/// --steps, --seed, ...). On a resume only max_steps, threads and eval_interval
/// may be set: the others would change what the resumed run computes.
struct TrainOverrides {
  std::optional<int64_t> max_steps, seed, batch_size, seq_len, threads, eval_interval, warmup_steps;
  std::optional<double> learning_rate, flop_budget, time_budget_s;
  std::optional<std::string> optimizer, lr_schedule;
};

/// What a fine-tune adapts: the base (a run's newest checkpoint or a checkpoint
/// directory), the adapter shape and quantization, and where the adapter goes.
struct FinetuneOptions {
  std::optional<int64_t> base_run_id;  // else base_checkpoint
  std::string base_checkpoint;
  LoraSpec lora;
  std::string quantize;     // "" (float base), "nf4", "affine4", "affine8", ...
  std::string adapter_out;  // "" = <db dir>/runs/<run id>/adapter
  /// Replaces the base's train config (the workbench's Run panel); else the
  /// base's, with RunSpec::train applied.
  std::optional<TrainConfig> train_config;
};

/// What a distillation learns from: the teacher (a run's newest checkpoint or
/// a checkpoint directory, whose tokenizer the student shares) and the mix of
/// ops/distill_loss.h: alpha * CE + (1 - alpha) * T^2 * KL at temperature T.
struct DistillOptions {
  std::optional<int64_t> teacher_run_id;  // else teacher_checkpoint
  std::string teacher_checkpoint;
  double temperature = 2.0;  // > 0
  double alpha = 0.5;        // in [0, 1]: the hard-label share
};

/// A DPO run: the policy starts from, and is compared with, a reference (a
/// run's newest checkpoint or a checkpoint directory, whose model and
/// tokenizer it keeps); the preference pairs are RunSpec::data_path, a JSONL
/// file of {"prompt", "chosen", "rejected"} (data/preference_data.h).
struct PreferenceOptions {
  std::optional<int64_t> base_run_id;  // else base_checkpoint
  std::string base_checkpoint;
  double beta = 0.1;  // > 0: the strength of the pull to the reference
  /// Replaces the reference's train config (the workbench's Run panel); else
  /// the reference's at a tenth of its learning rate, with RunSpec::train applied.
  std::optional<TrainConfig> train_config;
};

/// A GRPO run: the policy starts from, and is held by a KL penalty to, a
/// reference (a run's newest checkpoint or a checkpoint directory, whose model
/// and tokenizer it keeps); the prompts are RunSpec::data_path, a JSONL file
/// of {"prompt", "target"} (data/prompt_data.h); the reward is named by a spec
/// (train/rewards.h).
struct GrpoRunOptions {
  std::optional<int64_t> base_run_id;  // else base_checkpoint
  std::string base_checkpoint;
  std::string reward;  // exact | regex:PATTERN | length:N | cmd:COMMAND
  GrpoOptions grpo;
  /// Replaces the reference's train config (as PreferenceOptions::train_config).
  std::optional<TrainConfig> train_config;
};

/// Data-parallel training over processes (`mpirun -np N blocklab-cli train
/// --distributed`): the rank count and every rank's host, recorded with the
/// run (machine JSON "distributed"). A resume must use the same rank count.
struct DistributedSpec {
  int world_size = 1;  // 1: this process alone
  std::vector<std::string> hosts;
};

/// A run description that cannot be launched as given (a malformed assignment,
/// options that contradict each other or the run kind). The CLI reports it as
/// a usage error; config rule violations are ConfigError instead.
struct RunSpecError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct RunSpec {
  RunKind kind = RunKind::kFresh;

  // What to train (fresh): a composed config, else a config file, else a named
  // preset (default gpt-tiny). preset_name also names a composed config's origin.
  std::optional<Preset> config;
  std::string config_path;
  std::string preset_name;
  std::vector<std::string> set;  // "field=value" assignments (fresh, fork)
  TrainOverrides train;          // applied after `set`

  std::string data_path;  // "" = the parent's dataset (resume, fork) or the bundled corpus
  std::string tokenizer;  // "char" | "byte"; "" = char, or the parent's (fork)

  std::optional<int64_t> parent_run_id;  // resume, fork
  bool fresh_weights = false;            // fork: newly initialised weights
  FinetuneOptions finetune;              // kind == kFinetune
  DistillOptions distill;                // kind == kDistill
  PreferenceOptions preference;          // kind == kPreference
  GrpoRunOptions grpo;                   // kind == kGrpo

  bool record =
      true;  // false: no store, run row or savers (benchmarks, ranks > 0; fresh runs only)
  DistributedSpec distributed;
  std::string db_path;  // "" = default_db_path()
  StoreOptions store;
  std::optional<int64_t> checkpoint_interval;
  int keep_checkpoints = 2;

  std::string name;  // "" = derived from what is trained
  std::vector<std::string> tags;

  // The sweep trial this run is (engine/sweep/): recorded on the run row. A
  // resume keeps its parent's sweep and trial when these are unset.
  std::optional<int64_t> sweep_id, sweep_trial;
};

/// Path of the bundled default corpus.
std::string default_data_path();

}  // namespace bl
