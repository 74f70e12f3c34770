// The first half of launching a run: everything that can be checked without
// reading the corpus or allocating a tensor. It resolves the spec against the
// store (a resumed or forked run, a fine-tune's base), applies overrides,
// checks every config rule (with the upper bounds), that the data file exists
// and is a regular file, and that the model fits in memory. A spec that fails
// here has read no data, built no model and created no run row.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/presets.h"
#include "lora/finetune.h"
#include "run/run_spec.h"
#include "store/experiment_store.h"

namespace bl {

/// A distillation's resolved teacher, recorded in the run's summary
/// ("distill") so a resume reloads the same teacher.
struct DistillPlan {
  std::optional<int64_t> teacher_run_id;  // the run that wrote the checkpoint, if known
  std::string teacher_checkpoint;         // absolute directory
  std::string teacher_sha256;             // checkpoint_sha256 when planned: verified on resume
  ModelConfig teacher_model;
  nlohmann::json teacher_tokenizer;
  double temperature = 2.0, alpha = 0.5;

  nlohmann::json to_json() const;
  /// From a run's summary "distill" block; std::invalid_argument naming what is wrong.
  static DistillPlan from_json(const nlohmann::json& j);
};

/// A DPO run's resolved reference, recorded in the run's summary ("dpo") so
/// a resume recomputes the same reference log-probabilities.
struct PreferencePlan {
  std::optional<int64_t> base_run_id;  // the run that wrote the checkpoint, if known
  std::string base_checkpoint;         // absolute directory
  std::string base_sha256;             // checkpoint_sha256 when planned: verified on resume
  double beta = 0.1;

  nlohmann::json to_json() const;
  /// From a run's summary "dpo" block; std::invalid_argument naming what is wrong.
  static PreferencePlan from_json(const nlohmann::json& j);
};

/// A GRPO run's resolved reference and recipe, recorded in the run's summary
/// ("grpo") so a resume rebuilds the same objective.
struct GrpoPlan {
  std::optional<int64_t> base_run_id;
  std::string base_checkpoint;  // absolute directory
  std::string base_sha256;      // verified on resume
  std::string reward;
  GrpoOptions options;

  nlohmann::json to_json() const;
  /// From a run's summary "grpo" block; std::invalid_argument naming what is wrong.
  static GrpoPlan from_json(const nlohmann::json& j);
};

struct RunPlan {
  RunKind kind = RunKind::kFresh;
  Preset preset;  // model + train config as trained (a fine-tune: the base's model)
  std::string data_path;
  bool token_file = false;          // data_path is a prepared token file (data/token_file.h)
  std::string tokenizer;            // "char" | "byte": built from the corpus
  nlohmann::json tokenizer_json;    // else restored from this (resume, fork)
  bool init_weights = true;         // fresh initialisation from train.seed
  std::string weights_from;         // checkpoint whose weights are loaded ("" = none)
  std::string trainer_state_from;   // checkpoint whose trainer state is loaded (resume)
  std::optional<RunRecord> parent;  // resumed / forked run
  std::optional<FinetuneSpec> finetune;
  std::optional<DistillPlan> distill;        // a distillation (new or resumed)
  std::optional<PreferencePlan> preference;  // a DPO run (new or resumed)
  std::optional<GrpoPlan> grpo;              // a GRPO run (new or resumed)
  std::string adapter;  // fine-tune: adapter path; "" = <run dir>/adapter once the run exists
  RunRecord record;     // name, tags, preset, parent: the rest is filled at launch
  nlohmann::json summary_extra = nlohmann::json::object();  // forked_from, ...
  std::vector<std::string> notes;  // "note: ..." / "warning: ..." for the user
  int keep_checkpoints = 2;
};

/// Resolves and checks `spec` (see above); `store` may be null for a fresh run. Throws RunSpecError
/// for a spec that contradicts itself, ConfigError listing every broken config rule (field and
/// limit named) or the memory estimate, std::runtime_error for a missing or
/// non-regular file, an unknown run or a checkpoint that cannot be used.
RunPlan plan_run(const RunSpec& spec, ExperimentStore* store);

/// A run recorded by a fine-tune with its spec (summary "lora" block).
bool is_finetune_run(const RunRecord& run);
/// A run recorded by a distillation with its teacher (summary "distill" block).
bool is_distill_run(const RunRecord& run);
/// A DPO run, recorded with its reference (summary "dpo" block).
bool is_preference_run(const RunRecord& run);
/// A GRPO run, recorded with its reference and recipe (summary "grpo" block).
bool is_grpo_run(const RunRecord& run);

/// The run's newest checkpoint on disk, its model.safetensors checked against
/// the SHA-256 recorded in the store (CheckpointError if it differs).
CheckpointRecord checkpoint_to_resume(ExperimentStore& store, const RunRecord& run);

}  // namespace bl
