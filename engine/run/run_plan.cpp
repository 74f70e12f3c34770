#include "run/run_plan.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "data/text_dataset.h"
#include "data/token_file.h"
#include "export/llama_gguf_names.h"
#include "run/config_overrides.h"
#include "run/memory_estimate.h"
#include "train/checkpoint.h"
#include "train/rewards.h"
#include "train/store_logger.h"

namespace bl {

namespace fs = std::filesystem;

namespace {

std::string run_str(int64_t id) {
  return std::to_string(id);
}

RunRecord get_run_or_throw(ExperimentStore* db, const std::optional<int64_t>& id,
                           const char* kind) {
  if (!id || !db)
    throw RunSpecError(std::string("a ") + kind + " needs the id of a run in a store");
  ExperimentStore& store = *db;
  auto run = store.get_run(*id);
  if (!run)
    throw std::runtime_error(store.path() + ": no run with id " + run_str(*id) +
                             " (see blocklab-cli runs list)");
  return *run;
}

// Absolute and normalised, without a trailing separator ("ad/" -> "/cwd/ad"):
// recorded paths must still work when a resume runs from another directory.
std::string absolute_path(const std::string& p) {
  fs::path a = fs::absolute(p).lexically_normal();
  if (a.filename().empty() && a.has_parent_path()) a = a.parent_path();
  return a.string();
}

/// Every config rule, then (only for a valid config) the memory estimate.
void check_config(const Preset& p, int64_t trainable = -1, int64_t rows_per_sample = 1) {
  std::vector<std::string> errors = validation_errors(p);
  TrainConfig sized = p.train;
  sized.batch_size *= rows_per_sample;
  if (errors.empty())
    errors =
        memory_errors(estimate_training_memory(p.model, sized, trainable), machine_memory_bytes());
  if (!errors.empty()) throw ConfigError(errors);
}

void apply_resume_overrides(const RunSpec& spec, const RunRecord& run, TrainConfig& t,
                            int64_t reached_step) {
  std::string field;
  if (overrides_computation(spec.train, &field) || !spec.set.empty() || spec.config ||
      !spec.config_path.empty() || !spec.preset_name.empty() || !spec.tokenizer.empty() ||
      !spec.data_path.empty())
    throw RunSpecError(
        "a resumed run keeps its configuration" +
        (field.empty() ? std::string() : " (" + field + " cannot change)") +
        "; only the step count, threads, eval interval and time budget may change: fork run " +
        run_str(run.id) + " for a changed copy");
  apply_train_overrides(spec.train, t);
  if (spec.checkpoint_interval) t.checkpoint_interval = *spec.checkpoint_interval;
  if (reached_step >= t.max_steps)
    throw RunSpecError("run " + run_str(run.id) + " already reached step " +
                       std::to_string(reached_step) + " of " + std::to_string(t.max_steps) +
                       "; pass --steps N (N > " + std::to_string(reached_step) +
                       ") to train it further");
}

// A preset's (or config file's) warm-up longer than a short run shrinks to a
// tenth of it, with a note; an explicit --warmup / --set train.warmup_steps
// that does not fit stays an error (validation names it).
void fit_warmup(const RunSpec& spec, TrainConfig& t, std::vector<std::string>& notes) {
  if (spec.train.warmup_steps || t.max_steps < 1 || t.warmup_steps <= t.max_steps) return;
  for (const std::string& a : spec.set)
    if (a.rfind("train.warmup_steps=", 0) == 0 || a.rfind("train.warmup=", 0) == 0) return;
  const int64_t was = t.warmup_steps;
  t.warmup_steps = t.max_steps / 10;
  notes.push_back("note: warmup_steps " + std::to_string(was) + " > max_steps " +
                  std::to_string(t.max_steps) + ": shrunk to " + std::to_string(t.warmup_steps) +
                  " (a tenth of the run); pass --warmup N to choose");
}

void plan_fresh(const RunSpec& spec, RunPlan& plan) {
  if (spec.config) {
    plan.preset = *spec.config;
    plan.record.preset = spec.preset_name;
  } else if (!spec.config_path.empty()) {
    if (!spec.preset_name.empty()) throw RunSpecError("give --preset or --config, not both");
    plan.preset = load_preset_file(spec.config_path);
  } else {
    plan.record.preset = spec.preset_name.empty() ? "gpt-tiny" : spec.preset_name;
    plan.preset = load_preset(plan.record.preset);
  }
  plan.preset = apply_set_overrides(plan.preset, spec.set);
  apply_train_overrides(spec.train, plan.preset.train);
  fit_warmup(spec, plan.preset.train, plan.notes);
  plan.data_path = spec.data_path.empty() ? default_data_path() : spec.data_path;
  plan.tokenizer = spec.tokenizer.empty() ? "char" : spec.tokenizer;
  plan.record.name = !spec.name.empty()            ? spec.name
                     : !plan.record.preset.empty() ? plan.record.preset
                     : !spec.config_path.empty()   ? fs::path(spec.config_path).stem().string()
                                                   : plan.preset.model.name;
}

/// Rank count a run was trained with (machine JSON "distributed"; 1 without).
int recorded_world_size(const RunRecord& run) {
  const nlohmann::json& m = run.machine;
  if (!m.is_object() || !m.contains("distributed") || !m["distributed"].is_object()) return 1;
  const nlohmann::json& n = m["distributed"]["world_size"];
  return n.is_number_integer() ? n.get<int>() : 1;
}

/// The reduction over N ranks sums gradients in another order than over M:
/// a resume reproduces the run only at the rank count it was trained with.
void check_resume_world_size(const RunSpec& spec, const RunRecord& run) {
  const int was = recorded_world_size(run), now = spec.distributed.world_size;
  if (was == now) return;
  auto how = [&](int n) {
    return n > 1 ? "mpirun -np " + std::to_string(n) + " blocklab-cli train --resume " +
                       run_str(run.id) + " --distributed"
                 : "blocklab-cli train --resume " + run_str(run.id) + " (without mpirun)";
  };
  throw RunSpecError("run " + run_str(run.id) + " was trained " +
                     (was > 1 ? "data-parallel over " + std::to_string(was) + " MPI ranks"
                              : std::string("in one process")) +
                     ", and a resume continues it only with the same rank count (this one has " +
                     std::to_string(now) + "): " + how(was) +
                     "; fork it (--fork) to continue with another");
}

void plan_resume(const RunSpec& spec, ExperimentStore& store, const RunRecord& run, RunPlan& plan) {
  check_resume_world_size(spec, run);
  const CheckpointRecord ck = checkpoint_to_resume(store, run);
  const CheckpointInfo info = read_checkpoint_info(ck.path);
  if (!info.finetune.is_null())
    throw CheckpointError(ck.path + " is a fine-tune checkpoint, but run " + run_str(run.id) +
                          " has no recorded fine-tune spec to rebuild its base from");
  plan.preset.model = info.model;
  plan.preset.train = info.train;
  apply_resume_overrides(spec, run, plan.preset.train, info.step);
  plan.record.preset = run.preset;
  plan.tokenizer_json = info.tokenizer;
  plan.data_path = run.dataset_path;
  plan.init_weights = false;
  plan.weights_from = plan.trainer_state_from = ck.path;
  plan.record.name = spec.name.empty() ? run.name : spec.name;
  plan.record.tags = run.tags;
}

void plan_fork(const RunSpec& spec, ExperimentStore& store, const RunRecord& run, RunPlan& plan) {
  if (!spec.config_path.empty() || (!spec.config && !spec.preset_name.empty()))
    throw RunSpecError("--fork takes the configuration of run " + run_str(run.id) +
                       "; change it with --set field=value instead of --preset/--config");
  Preset base;
  if (spec.config) {
    base = *spec.config;  // the workbench's edit of the run's config
  } else {
    try {
      base = preset_from_json({{"model", run.model_config}, {"train", run.train_config}});
    } catch (const ConfigError& e) {
      throw std::runtime_error("the stored config of run " + run_str(run.id) +
                               " is invalid: " + e.what());
    }
  }
  plan.preset = apply_set_overrides(base, spec.set);
  apply_train_overrides(spec.train, plan.preset.train);
  fit_warmup(spec, plan.preset.train, plan.notes);
  plan.record.preset = spec.preset_name.empty() ? run.preset : spec.preset_name;
  plan.data_path = spec.data_path.empty() ? run.dataset_path : spec.data_path;
  plan.tokenizer = spec.tokenizer;
  if (spec.tokenizer.empty()) plan.tokenizer_json = run.tokenizer;
  plan.record.name = spec.name.empty() ? run.name + " (fork)" : spec.name;
  nlohmann::json checkpoint;  // null: fresh weights
  if (!spec.fresh_weights) {
    auto ck = latest_checkpoint(store, run.id);
    if (ck && !read_checkpoint_info(ck->path).finetune.is_null())
      throw std::runtime_error("run " + run_str(run.id) +
                               " is a LoRA fine-tune: its checkpoints hold only adapter weights, "
                               "so a fork cannot start from them; fork its base run, or add "
                               "--fresh for newly initialised weights");
    if (ck) {
      plan.weights_from = ck->path;
      checkpoint = ck->path;
    } else {
      plan.notes.push_back("note: run " + run_str(run.id) +
                           " has no checkpoint; the fork starts from fresh weights");
    }
  }
  plan.summary_extra["forked_from"] = {
      {"run", run.id}, {"checkpoint", checkpoint}, {"set", spec.set}};
}

/// A new fine-tune: the base checkpoint fixes model and tokenizer.
void plan_finetune(const RunSpec& spec, ExperimentStore& store, RunPlan& plan) {
  const FinetuneOptions& f = spec.finetune;
  if (spec.config || !spec.config_path.empty() || !spec.preset_name.empty() ||
      !spec.tokenizer.empty() || !spec.set.empty())
    throw RunSpecError(
        "a fine-tune takes model and tokenizer from its base checkpoint: no preset, config, "
        "--set or tokenizer");
  std::string base = f.base_checkpoint;
  if (f.base_run_id) {
    plan.record.parent_run_id = *f.base_run_id;
    const auto ck = latest_checkpoint(store, *f.base_run_id);
    if (!ck)
      throw std::runtime_error("run " + run_str(*f.base_run_id) +
                               " has no checkpoint to fine-tune");
    base = ck->path;
  } else {
    if (base.empty()) throw RunSpecError("a fine-tune needs a base run or checkpoint");
    // The run that wrote the checkpoint becomes the parent of the fine-tune.
    std::error_code ec;
    for (const RunRecord& r : store.list_runs())
      for (const CheckpointRecord& c : store.checkpoints(r.id))
        if (!plan.record.parent_run_id && fs::equivalent(c.path, base, ec))
          plan.record.parent_run_id = r.id;
  }
  base = absolute_path(base);
  const CheckpointInfo info = read_checkpoint_info(base);
  if (!info.finetune.is_null())
    throw RunSpecError(base +
                       " is a fine-tune checkpoint (adapter weights only); fine-tune its base " +
                       info.finetune.value("base_checkpoint", std::string("(unknown)")) +
                       " instead, or merge the adapter into it first (lora merge)");
  plan.preset.model = info.model;
  plan.preset.train = f.train_config ? *f.train_config : info.train;
  apply_train_overrides(spec.train, plan.preset.train);
  if (!f.train_config) fit_warmup(spec, plan.preset.train, plan.notes);
  FinetuneSpec fs_spec;
  fs_spec.base_checkpoint = base;
  fs_spec.lora = f.lora;
  fs_spec.quantize = f.quantize;
  fs_spec.seed = uint64_t(plan.preset.train.seed);
  plan.finetune = fs_spec;
  plan.adapter = f.adapter_out.empty() ? "" : absolute_path(f.adapter_out);
  // A .gguf adapter is written in llama.cpp's layout: refuse now, not after training.
  if (plan.adapter.ends_with(".gguf")) {
    const std::string why = llama_cpp_incompatibility(info.model);
    if (!why.empty())
      throw RunSpecError(
          "--adapter-out " + f.adapter_out +
          ": a .gguf adapter is written for llama.cpp, which cannot run this base: " + why +
          " (use a PEFT directory instead)");
  }
  plan.tokenizer_json = info.tokenizer;
  plan.data_path = spec.data_path.empty() ? default_data_path() : spec.data_path;
  plan.record.name = !spec.name.empty()        ? spec.name
                     : info.model.name.empty() ? "lora"
                                               : info.model.name + " lora";
}

/// A stopped or killed fine-tune, rebuilt from the spec recorded in its run.
void plan_finetune_resume(const RunSpec& spec, ExperimentStore& store, const RunRecord& run,
                          RunPlan& plan) {
  const std::string id = run_str(run.id);
  const nlohmann::json& block = run.summary["lora"];
  try {
    plan.finetune = finetune_spec_from_json(block);
    if (!block.contains("adapter") || !block["adapter"].is_string() ||
        block["adapter"].get<std::string>().empty())
      throw std::invalid_argument("fine-tune spec: missing \"adapter\" path");
    plan.adapter = block["adapter"];
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("LoRA run " + id + " cannot be resumed: its recorded " + e.what());
  }
  if (store.checkpoints(run.id).empty())
    throw std::runtime_error(
        "LoRA run " + id +
        " has no fine-tune checkpoint to resume from (it stopped before its first "
        "--checkpoint-interval, or it was recorded by a Blocklab version that did not write "
        "fine-tune checkpoints)");
  const CheckpointRecord ck = checkpoint_to_resume(store, run);
  const CheckpointInfo info = read_checkpoint_info(ck.path);
  if (info.finetune.is_null())
    throw CheckpointError(ck.path + ": LoRA run " + id +
                          " registered a whole-model checkpoint instead of a fine-tune checkpoint");
  plan.preset.model = info.model;
  plan.preset.train = info.train;
  apply_resume_overrides(spec, run, plan.preset.train, info.step);
  // The base must be the one the adapter was trained on: same path, same bytes.
  std::error_code ec;
  if (!fs::is_directory(plan.finetune->base_checkpoint, ec))
    throw std::runtime_error("the base checkpoint of LoRA run " + id + ", " +
                             plan.finetune->base_checkpoint +
                             ", no longer exists (a fine-tune resumes only on the base it began "
                             "with)");
  plan.tokenizer_json = info.tokenizer;
  plan.weights_from = plan.trainer_state_from = ck.path;
  plan.data_path = run.dataset_path;
  plan.record.name = spec.name.empty() ? run.name : spec.name;
  plan.record.tags = run.tags;
}

/// The teacher checkpoint's model and tokenizer, checked against what the
/// plan recorded; refuses a fine-tune (adapter-only) checkpoint.
void read_teacher(DistillPlan& d, const std::string& what) {
  std::error_code ec;
  if (!fs::is_directory(d.teacher_checkpoint, ec))
    throw std::runtime_error("teacher checkpoint " + d.teacher_checkpoint + " (" + what +
                             ") does not exist or is not a directory");
  const CheckpointInfo info = read_checkpoint_info(d.teacher_checkpoint);
  if (!info.finetune.is_null())
    throw RunSpecError("teacher " + d.teacher_checkpoint +
                       " is a LoRA fine-tune checkpoint (adapter weights only): merge the adapter "
                       "into its base first (lora merge) and distill from the merged checkpoint");
  d.teacher_model = info.model;
  d.teacher_tokenizer = info.tokenizer;
}

/// A new distillation: a fresh student, its teacher resolved and checked.
void plan_distill(const RunSpec& spec, ExperimentStore* store, RunPlan& plan) {
  const DistillOptions& o = spec.distill;
  if (!(std::isfinite(o.temperature) && o.temperature > 0))
    throw RunSpecError("--distill-temperature must be > 0, got " + std::to_string(o.temperature));
  if (!(o.alpha >= 0 && o.alpha <= 1))
    throw RunSpecError("--distill-alpha must be in [0, 1], got " + std::to_string(o.alpha));
  plan_fresh(spec, plan);
  DistillPlan d;
  d.temperature = o.temperature;
  d.alpha = o.alpha;
  if (o.teacher_run_id) {
    const RunRecord teacher = get_run_or_throw(store, o.teacher_run_id, "distillation from a run");
    const auto ck = latest_checkpoint(*store, teacher.id);
    if (!ck)
      throw std::runtime_error("--distill-from: teacher run " + run_str(teacher.id) +
                               " has no checkpoint on disk to distill from");
    verify_checkpoint(ck->path, ck->sha256);
    d.teacher_run_id = teacher.id;
    d.teacher_checkpoint = absolute_path(ck->path);
  } else {
    if (o.teacher_checkpoint.empty())
      throw RunSpecError("a distillation needs a teacher run or checkpoint (--distill-from)");
    d.teacher_checkpoint = absolute_path(o.teacher_checkpoint);
    std::error_code ec;
    if (store && fs::is_directory(d.teacher_checkpoint, ec))
      for (const RunRecord& r : store->list_runs())
        for (const CheckpointRecord& c : store->checkpoints(r.id))
          if (!d.teacher_run_id && fs::equivalent(c.path, d.teacher_checkpoint, ec))
            d.teacher_run_id = r.id;
  }
  read_teacher(d, "--distill-from " +
                      (o.teacher_run_id ? run_str(*o.teacher_run_id) : o.teacher_checkpoint));
  d.teacher_sha256 = checkpoint_sha256(d.teacher_checkpoint);
  // The student reads the corpus with the teacher's tokenizer unless one is
  // named (then launch_run checks that both give the same vocabulary).
  if (spec.tokenizer.empty()) {
    plan.tokenizer.clear();
    plan.tokenizer_json = d.teacher_tokenizer;
  }
  plan.record.parent_run_id = d.teacher_run_id;
  if (spec.name.empty()) plan.record.name += " (distilled)";
  plan.distill = std::move(d);
}

/// A stopped or killed distillation: its recorded teacher, the same bytes.
void plan_distill_resume(const RunRecord& run, RunPlan& plan) {
  DistillPlan d;
  try {
    d = DistillPlan::from_json(run.summary["distill"]);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("distillation run " + run_str(run.id) +
                             " cannot be resumed: its recorded " + e.what());
  }
  read_teacher(d, "the teacher of distillation run " + run_str(run.id));
  try {
    verify_checkpoint(d.teacher_checkpoint, d.teacher_sha256);
  } catch (const CheckpointError& e) {
    throw CheckpointError("the teacher of distillation run " + run_str(run.id) +
                          " changed since the run began (a distillation resumes only with the "
                          "teacher it began with): " +
                          e.what());
  }
  plan.distill = std::move(d);
}

/// The stored model a DPO or GRPO run tunes (and compares with), resolved.
struct TunedBase {
  std::optional<int64_t> run_id;
  std::string checkpoint;  // absolute
  std::string sha256;
};

/// Where the base is: a run's newest checkpoint (verified) or a directory
/// (whose run, if it is one of this store's, becomes the parent). `option`
/// names the flag in messages ("--dpo-from").
TunedBase resolve_base(const std::optional<int64_t>& run_id, const std::string& checkpoint,
                       ExperimentStore* store, const std::string& option) {
  TunedBase b;
  if (run_id) {
    const RunRecord base = get_run_or_throw(store, run_id, "run tuning a stored run");
    const auto ck = latest_checkpoint(*store, base.id);
    if (!ck)
      throw std::runtime_error(option + ": run " + run_str(base.id) +
                               " has no checkpoint on disk to start from");
    verify_checkpoint(ck->path, ck->sha256);
    b.run_id = base.id;
    b.checkpoint = absolute_path(ck->path);
  } else {
    if (checkpoint.empty())
      throw RunSpecError("this run needs the model it starts from (" + option + " RUN|CKPT)");
    b.checkpoint = absolute_path(checkpoint);
    std::error_code ec;
    if (!fs::is_directory(b.checkpoint, ec))
      throw std::runtime_error(option + " " + checkpoint + ": no such checkpoint directory");
    if (store)
      for (const RunRecord& r : store->list_runs())
        for (const CheckpointRecord& c : store->checkpoints(r.id))
          if (!b.run_id && fs::equivalent(c.path, b.checkpoint, ec)) b.run_id = r.id;
  }
  return b;
}

/// A new DPO or GRPO run: model, tokenizer and weights from the base
/// checkpoint; the train config given (the workbench's panel) or the base's
/// at a tenth of its learning rate unless --lr is given (tuning moves a
/// trained model gently), with the overrides.
TunedBase plan_tuned(const RunSpec& spec, ExperimentStore* store, RunPlan& plan,
                     const std::optional<int64_t>& run_id, const std::string& checkpoint,
                     const std::optional<TrainConfig>& train_config, const std::string& option,
                     const std::string& kind) {
  if (spec.config || !spec.config_path.empty() || !spec.preset_name.empty() ||
      !spec.tokenizer.empty() || !spec.set.empty())
    throw RunSpecError("a " + kind +
                       " run takes model and tokenizer from the checkpoint it starts from: no "
                       "preset, config, --set or tokenizer");
  TunedBase b = resolve_base(run_id, checkpoint, store, option);
  const CheckpointInfo info = read_checkpoint_info(b.checkpoint);
  if (!info.finetune.is_null())
    throw RunSpecError(option + " " + b.checkpoint +
                       " is a LoRA fine-tune checkpoint (adapter weights only): merge the adapter "
                       "into its base first (lora merge) and start from the merged checkpoint");
  b.sha256 = checkpoint_sha256(b.checkpoint);
  plan.preset.model = info.model;
  plan.preset.train = train_config ? *train_config : info.train;
  const double base_lr = info.train.learning_rate;
  apply_train_overrides(spec.train, plan.preset.train);
  if (!spec.train.learning_rate && !train_config) {
    plan.preset.train.learning_rate = base_lr / 10;
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "note: %s learning rate %.3g, a tenth of the base run's %.3g; pass --lr to "
                  "choose",
                  kind.c_str(), plan.preset.train.learning_rate, base_lr);
    plan.notes.push_back(buf);
  }
  if (!train_config) fit_warmup(spec, plan.preset.train, plan.notes);
  plan.tokenizer_json = info.tokenizer;
  plan.init_weights = false;
  plan.weights_from = b.checkpoint;
  plan.data_path = spec.data_path;
  plan.record.parent_run_id = b.run_id;
  std::string lower = kind;
  for (char& c : lower) c = char(std::tolower(c));
  plan.record.name = !spec.name.empty()        ? spec.name
                     : info.model.name.empty() ? lower
                                               : info.model.name + " " + lower;
  return b;
}

/// A new DPO run (plan_tuned, with the pairs file and beta).
void plan_preference(const RunSpec& spec, ExperimentStore* store, RunPlan& plan) {
  const PreferenceOptions& o = spec.preference;
  if (!(std::isfinite(o.beta) && o.beta > 0))
    throw RunSpecError("--dpo-beta must be > 0, got " + std::to_string(o.beta));
  if (spec.data_path.empty())
    throw RunSpecError(
        "a DPO run needs preference pairs: --data FILE.jsonl, one {\"prompt\", \"chosen\", "
        "\"rejected\"} object per line");
  const TunedBase b = plan_tuned(spec, store, plan, o.base_run_id, o.base_checkpoint,
                                 o.train_config, "--dpo-from", "DPO");
  PreferencePlan d;
  d.beta = o.beta;
  d.base_run_id = b.run_id;
  d.base_checkpoint = b.checkpoint;
  d.base_sha256 = b.sha256;
  plan.preference = std::move(d);
}

/// A new GRPO run (plan_tuned, with the prompts file, reward and recipe).
void plan_grpo(const RunSpec& spec, ExperimentStore* store, RunPlan& plan) {
  const GrpoRunOptions& o = spec.grpo;
  try {
    Reward::parse(o.reward);
  } catch (const std::invalid_argument& e) {
    throw RunSpecError(std::string("--reward: ") + e.what());
  }
  if (spec.data_path.empty())
    throw RunSpecError(
        "a GRPO run needs prompts: --data FILE.jsonl, one {\"prompt\", \"target\"} object per "
        "line");
  const GrpoOptions& g = o.grpo;
  if (g.group < 2) throw RunSpecError("--group-size must be >= 2, got " + std::to_string(g.group));
  if (!(g.temperature > 0)) throw RunSpecError("--grpo-temperature must be > 0");
  if (!(g.beta >= 0) || !(g.eps >= 0))
    throw RunSpecError("--grpo-beta and --grpo-clip must be >= 0");
  const TunedBase b = plan_tuned(spec, store, plan, o.base_run_id, o.base_checkpoint,
                                 o.train_config, "--grpo-from", "GRPO");
  if (g.max_new_tokens < 1 || g.max_new_tokens >= plan.preset.model.block.max_seq_len)
    throw RunSpecError("--max-new-tokens must be in [1, " +
                       std::to_string(plan.preset.model.block.max_seq_len) +
                       ") (the model's max_seq_len leaves room for the prompt), got " +
                       std::to_string(g.max_new_tokens));
  GrpoPlan d;
  d.base_run_id = b.run_id;
  d.base_checkpoint = b.checkpoint;
  d.base_sha256 = b.sha256;
  d.reward = o.reward;
  d.options = g;
  plan.grpo = std::move(d);
}

/// The recorded base of a resumed DPO / GRPO run must be there, unchanged.
void check_recorded_base(const RunRecord& run, const std::string& checkpoint,
                         const std::string& sha256, const std::string& kind) {
  std::error_code ec;
  if (!fs::is_directory(checkpoint, ec))
    throw std::runtime_error("the reference checkpoint of " + kind + " run " + run_str(run.id) +
                             ", " + checkpoint + ", no longer exists");
  try {
    verify_checkpoint(checkpoint, sha256);
  } catch (const CheckpointError& e) {
    throw CheckpointError("the reference of " + kind + " run " + run_str(run.id) +
                          " changed since the run began (it resumes only against the reference "
                          "it began with): " +
                          e.what());
  }
}

/// A stopped or killed GRPO run: its recorded reference and recipe.
void plan_grpo_resume(const RunRecord& run, RunPlan& plan) {
  GrpoPlan d;
  try {
    d = GrpoPlan::from_json(run.summary["grpo"]);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("GRPO run " + run_str(run.id) + " cannot be resumed: its recorded " +
                             e.what());
  }
  check_recorded_base(run, d.base_checkpoint, d.base_sha256, "GRPO");
  plan.grpo = std::move(d);
}

/// A stopped or killed DPO run: its recorded reference, the same bytes.
void plan_preference_resume(const RunRecord& run, RunPlan& plan) {
  PreferencePlan d;
  try {
    d = PreferencePlan::from_json(run.summary["dpo"]);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("DPO run " + run_str(run.id) + " cannot be resumed: its recorded " +
                             e.what());
  }
  check_recorded_base(run, d.base_checkpoint, d.base_sha256, "DPO");
  plan.preference = std::move(d);
}

/// A prepared token file brings its tokenizer: the run uses it. A tokenizer
/// named for the run must be of its kind; one the run already has (a fork's,
/// a fine-tune base's, a teacher's, a resumed run's) must be the same.
void adopt_token_file(const RunSpec& spec, RunPlan& plan) {
  const TokenFileHeader h = read_token_file_header(plan.data_path);
  if (plan.preference || plan.grpo)
    throw RunSpecError(std::string("a ") + (plan.preference ? "DPO" : "GRPO") +
                       " run reads a JSONL file, not a token file (" + plan.data_path + ")");
  const std::string kind = h.tokenizer.value("type", std::string("?"));
  const std::string named = spec.tokenizer.substr(0, spec.tokenizer.find(':'));
  if (!named.empty() && named != kind)
    throw RunSpecError("--tokenizer " + spec.tokenizer + ": " + plan.data_path +
                       " is a token file prepared with the " + kind +
                       " tokenizer, which the run uses (leave out --tokenizer)");
  if (plan.tokenizer.empty() && !plan.tokenizer_json.is_null() &&
      plan.tokenizer_json != h.tokenizer)
    throw RunSpecError(plan.data_path +
                       " is a token file prepared with another tokenizer than the run's "
                       "model was trained with; prepare it from the text with that tokenizer");
  plan.token_file = true;
  plan.tokenizer.clear();
  plan.tokenizer_json = h.tokenizer;
}

}  // namespace

nlohmann::json PreferencePlan::to_json() const {
  return {{"base_run", base_run_id ? nlohmann::json(*base_run_id) : nlohmann::json()},
          {"base_checkpoint", base_checkpoint},
          {"base_sha256", base_sha256},
          {"beta", beta}};
}

PreferencePlan PreferencePlan::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("dpo spec is not an object");
  PreferencePlan d;
  if (!j.contains("base_checkpoint") || !j["base_checkpoint"].is_string() ||
      j["base_checkpoint"].get<std::string>().empty())
    throw std::invalid_argument("dpo spec: missing \"base_checkpoint\"");
  d.base_checkpoint = j["base_checkpoint"].get<std::string>();
  if (j.contains("base_sha256") && j["base_sha256"].is_string())
    d.base_sha256 = j["base_sha256"].get<std::string>();
  if (!j.contains("beta") || !j["beta"].is_number() || !(j["beta"].get<double>() > 0))
    throw std::invalid_argument("dpo spec: \"beta\" missing or not > 0");
  d.beta = j["beta"].get<double>();
  if (j.contains("base_run") && j["base_run"].is_number_integer())
    d.base_run_id = j["base_run"].get<int64_t>();
  return d;
}

nlohmann::json GrpoPlan::to_json() const {
  return {{"base_run", base_run_id ? nlohmann::json(*base_run_id) : nlohmann::json()},
          {"base_checkpoint", base_checkpoint},
          {"base_sha256", base_sha256},
          {"reward", reward},
          {"group", options.group},
          {"max_new_tokens", options.max_new_tokens},
          {"temperature", options.temperature},
          {"beta", options.beta},
          {"clip", options.eps}};
}

GrpoPlan GrpoPlan::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("grpo spec is not an object");
  auto need = [&](const char* k,
                  bool (nlohmann::json::*is)() const noexcept) -> const nlohmann::json& {
    if (!j.contains(k) || !(j[k].*is)())
      throw std::invalid_argument(std::string("grpo spec: \"") + k + "\" is missing or mistyped");
    return j[k];
  };
  GrpoPlan d;
  d.base_checkpoint = need("base_checkpoint", &nlohmann::json::is_string).get<std::string>();
  if (j.contains("base_sha256") && j["base_sha256"].is_string())
    d.base_sha256 = j["base_sha256"].get<std::string>();
  d.reward = need("reward", &nlohmann::json::is_string).get<std::string>();
  d.options.group = need("group", &nlohmann::json::is_number_integer).get<int64_t>();
  d.options.max_new_tokens =
      need("max_new_tokens", &nlohmann::json::is_number_integer).get<int64_t>();
  d.options.temperature = need("temperature", &nlohmann::json::is_number).get<float>();
  d.options.beta = need("beta", &nlohmann::json::is_number).get<float>();
  d.options.eps = need("clip", &nlohmann::json::is_number).get<float>();
  if (j.contains("base_run") && j["base_run"].is_number_integer())
    d.base_run_id = j["base_run"].get<int64_t>();
  return d;
}

bool is_grpo_run(const RunRecord& run) {
  return run.summary.is_object() && run.summary.contains("grpo") && run.summary["grpo"].is_object();
}

bool is_preference_run(const RunRecord& run) {
  return run.summary.is_object() && run.summary.contains("dpo") && run.summary["dpo"].is_object();
}

nlohmann::json DistillPlan::to_json() const {
  return {{"teacher_run", teacher_run_id ? nlohmann::json(*teacher_run_id) : nlohmann::json()},
          {"teacher_checkpoint", teacher_checkpoint},
          {"teacher_sha256", teacher_sha256},
          {"temperature", temperature},
          {"alpha", alpha}};
}

DistillPlan DistillPlan::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("distill spec is not an object");
  DistillPlan d;
  auto str = [&](const char* k) {
    if (!j.contains(k) || !j[k].is_string() || j[k].get<std::string>().empty())
      throw std::invalid_argument(std::string("distill spec: missing \"") + k + "\"");
    return j[k].get<std::string>();
  };
  auto num = [&](const char* k) {
    if (!j.contains(k) || !j[k].is_number())
      throw std::invalid_argument(std::string("distill spec: missing \"") + k + "\"");
    return j[k].get<double>();
  };
  d.teacher_checkpoint = str("teacher_checkpoint");
  d.teacher_sha256 = j.contains("teacher_sha256") && j["teacher_sha256"].is_string()
                         ? j["teacher_sha256"].get<std::string>()
                         : std::string();
  d.temperature = num("temperature");
  d.alpha = num("alpha");
  if (!(d.temperature > 0) || !(d.alpha >= 0 && d.alpha <= 1))
    throw std::invalid_argument("distill spec: temperature or alpha out of range");
  if (j.contains("teacher_run") && j["teacher_run"].is_number_integer())
    d.teacher_run_id = j["teacher_run"].get<int64_t>();
  return d;
}

bool is_distill_run(const RunRecord& run) {
  return run.summary.is_object() && run.summary.contains("distill") &&
         run.summary["distill"].is_object();
}

bool is_finetune_run(const RunRecord& run) {
  return run.summary.is_object() && run.summary.contains("lora") &&
         run.summary["lora"].is_object() && run.summary["lora"].contains("base_checkpoint");
}

CheckpointRecord checkpoint_to_resume(ExperimentStore& store, const RunRecord& run) {
  auto ck = latest_checkpoint(store, run.id);
  if (!ck) {
    const size_t n = store.checkpoints(run.id).size();
    throw std::runtime_error(
        "run " + run_str(run.id) + " has no checkpoint to resume from" +
        (n ? " (its " + std::to_string(n) + " recorded checkpoint(s) no longer exist on disk)"
           : " (it stopped before its first checkpoint; see --checkpoint-interval)"));
  }
  verify_checkpoint(ck->path, ck->sha256);  // every file, when it has a manifest
  return *ck;
}

RunPlan plan_run(const RunSpec& spec, ExperimentStore* store) {
  RunPlan plan;
  plan.kind = spec.kind;
  const int ranks = spec.distributed.world_size;
  if (ranks < 1) throw RunSpecError("the number of ranks must be at least 1");
  plan.keep_checkpoints = spec.keep_checkpoints;
  switch (spec.kind) {
    case RunKind::kFresh:
      plan_fresh(spec, plan);
      break;
    case RunKind::kResume: {
      RunRecord run = get_run_or_throw(store, spec.parent_run_id, "resume");
      // Runs of dead processes were marked interrupted when the store was opened.
      if (run.status == RunStatus::kRunning)
        throw std::runtime_error("run " + run_str(run.id) + " is still running (pid " +
                                 std::to_string(run.pid) + " on " + run.host +
                                 "); stop it before resuming it");
      if (is_finetune_run(run))
        plan_finetune_resume(spec, *store, run, plan);
      else
        plan_resume(spec, *store, run, plan);
      if (is_distill_run(run)) plan_distill_resume(run, plan);
      if (is_preference_run(run)) plan_preference_resume(run, plan);
      if (is_grpo_run(run)) plan_grpo_resume(run, plan);
      plan.record.parent_run_id = run.id;
      plan.parent = std::move(run);
      break;
    }
    case RunKind::kFork: {
      RunRecord run = get_run_or_throw(store, spec.parent_run_id, "fork");
      plan_fork(spec, *store, run, plan);
      plan.record.parent_run_id = run.id;
      plan.parent = std::move(run);
      break;
    }
    case RunKind::kFinetune:
      if (!store) throw RunSpecError("a fine-tune is recorded in a store");
      plan_finetune(spec, *store, plan);
      break;
    case RunKind::kDistill:
      plan_distill(spec, store, plan);
      break;
    case RunKind::kPreference:
      plan_preference(spec, store, plan);
      break;
    case RunKind::kGrpo:
      plan_grpo(spec, store, plan);
      break;
  }
  if (ranks > 1 && (plan.preference || plan.grpo))
    throw RunSpecError("--distributed trains on text; a DPO or GRPO run runs in one process");
  if (ranks > 1 && plan.distill)
    throw RunSpecError(
        "--distributed trains without a teacher; a distillation runs in one process");
  int64_t trainable = -1;  // all weights
  if (plan.finetune) {
    plan.record.preset.clear();
    plan.record.tags.push_back("lora");
    trainable = count_finetune(plan.preset.model, plan.finetune->lora).trainable;
  }
  if (spec.kind != RunKind::kResume && spec.checkpoint_interval)
    plan.preset.train.checkpoint_interval = *spec.checkpoint_interval;
  for (const std::string& t : spec.tags) plan.record.tags.push_back(t);
  if (ranks > 1 && plan.finetune)
    throw RunSpecError("--distributed trains whole models; a LoRA fine-tune runs in one process");
  // A DPO step runs 2 rows per batch entry, a GRPO step a group: the memory
  // estimate counts them.
  const int64_t rows = plan.preference ? 2 : plan.grpo ? plan.grpo->options.group : 1;
  check_config(plan.preset, trainable, rows);
  if (plan.preset.train.batch_size % ranks != 0)
    throw ConfigError("train.batch_size (" + std::to_string(plan.preset.train.batch_size) +
                      ") must be divisible by the number of MPI ranks (" + std::to_string(ranks) +
                      "): each rank trains on an equal share of every batch");
  if (is_token_file(plan.data_path))
    adopt_token_file(spec, plan);
  else
    check_text_file(plan.data_path);  // stat only: a FIFO is never opened
  return plan;
}

}  // namespace bl
