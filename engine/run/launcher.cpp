#include "run/launcher.h"

#include <filesystem>

#include "dist/flat_buffer.h"
#include "io/sha256.h"
#include "store/process_status.h"
#include "tensor/rng.h"
#include "train/preference.h"

namespace bl {

namespace {

std::string of_run(const RunPlan& plan) {
  return plan.parent ? " run " + std::to_string(plan.parent->id) : std::string(" the run");
}

std::string read_dataset(RunPlan& plan) {
  if (plan.token_file) return {};  // mapped later (load_dataset), never read whole
  const bool parents = plan.parent && plan.data_path == plan.parent->dataset_path;
  std::string text;
  try {
    text = read_text_file(plan.data_path);
  } catch (const std::exception& e) {
    if (!parents) throw;
    throw std::runtime_error("dataset of" + of_run(plan) + ": " + e.what());
  }
  if (plan.kind == RunKind::kResume && !plan.parent->dataset_sha256.empty() &&
      sha256_hex(text) != plan.parent->dataset_sha256)
    plan.notes.push_back("warning: " + plan.data_path + " changed since run " +
                         std::to_string(plan.parent->id) +
                         " was recorded (SHA-256 differs); the resumed run will not reproduce "
                         "the original");
  return text;
}

/// The run's token stream: the text encoded, or a token file mapped.
std::unique_ptr<TextDataset> load_dataset(const RunPlan& plan, const std::string& text,
                                          const Tokenizer& tok, double val_fraction) {
  if (plan.token_file)
    return std::make_unique<TextDataset>(
        TextDataset::from_token_file(plan.data_path, tok.vocab_size(), val_fraction));
  return std::make_unique<TextDataset>(text, tok, val_fraction);
}

std::unique_ptr<Tokenizer> build_tokenizer(const RunPlan& plan, const std::string& text) {
  if (!plan.tokenizer.empty()) return make_tokenizer(plan.tokenizer, text);
  try {
    return tokenizer_from_json(plan.tokenizer_json);
  } catch (const std::exception& e) {
    if (plan.kind != RunKind::kFork) throw;
    throw std::runtime_error("the stored tokenizer of" + of_run(plan) + " is invalid: " + e.what());
  }
}

std::string teacher_name(const DistillPlan& d) {
  return d.teacher_run_id ? "teacher run " + std::to_string(*d.teacher_run_id) + " (" +
                                d.teacher_checkpoint + ")"
                          : "teacher " + d.teacher_checkpoint;
}

/// The teacher of a distillation, on the student's tokenizer: logits are
/// compared token id by token id, so both must be the same vocabulary.
std::unique_ptr<LanguageModel> load_teacher(const DistillPlan& d, const Tokenizer& student) {
  std::string teacher_tok = "(unreadable tokenizer)";
  try {
    auto t = tokenizer_from_json(d.teacher_tokenizer);
    teacher_tok = t->name() + ", vocab " + std::to_string(t->vocab_size());
  } catch (const std::exception&) {
  }
  if (student.to_json() != d.teacher_tokenizer)
    throw RunSpecError("the student's tokenizer (" + student.name() + ", vocab " +
                       std::to_string(student.vocab_size()) + ") differs from " + teacher_name(d) +
                       "'s (" + teacher_tok +
                       "): a distilled student must share its teacher's tokenizer; leave out "
                       "--tokenizer to use the teacher's");
  auto teacher = std::make_unique<LanguageModel>(d.teacher_model);
  try {
    load_model_weights(d.teacher_checkpoint, *teacher);
  } catch (const CheckpointError& e) {
    throw CheckpointError(teacher_name(d) + ": " + e.what());
  }
  return teacher;
}

/// The trainer never reads a DPO or GRPO run's token stream, but it is built
/// on one (and the FLOP meter counts its windows): the pairs' prompt + chosen
/// text or the prompts, repeated until both splits hold a window.
std::unique_ptr<TextDataset> token_view(const std::string& one, const Tokenizer& tok,
                                        const TrainConfig& t) {
  const int64_t tokens = std::max<int64_t>(1, int64_t(tok.encode(one).size()));
  const double val = std::max(t.val_fraction, 0.01);
  const int64_t need = int64_t(double(t.seq_len + 2) / val) + t.seq_len + 2;
  std::string text;
  for (int64_t have = 0; have < need; have += tokens) text += one;
  return std::make_unique<TextDataset>(text, tok, val);
}

/// The reference's log-probabilities of every pair: the policy itself at the
/// start of a new run (it is the reference then), else the recorded reference
/// checkpoint, loaded for this and freed.
void set_reference(PreparedRun& r, const RunPlan& plan) {
  const PreferencePlan& d = *plan.preference;
  const TrainConfig& t = plan.preset.train;
  std::unique_ptr<LanguageModel> loaded;
  LanguageModel* ref = &r.model();
  if (plan.kind == RunKind::kResume) {
    loaded = std::make_unique<LanguageModel>(plan.preset.model);
    try {
      load_model_weights(d.base_checkpoint, *loaded);
    } catch (const CheckpointError& e) {
      throw CheckpointError("the reference of DPO run " + std::to_string(plan.parent->id) + ": " +
                            e.what());
    }
    ref = loaded.get();
  }
  const PreferenceData& pairs = *r.preference();
  r.trainer().set_preference(&pairs, reference_logps(*ref, pairs.train(), t.seq_len, t.batch_size),
                             reference_logps(*ref, pairs.val(), t.seq_len, t.batch_size),
                             float(d.beta));
}

}  // namespace

std::string run_adapter_dir(const std::string& db_path, int64_t run_id) {
  return run_files_dir(db_path, run_id) + "/adapter";
}

PreparedRun::~PreparedRun() = default;

int64_t PreparedRun::begin() {
  if (!logger_) return 0;
  if (logger_->run_id()) return logger_->run_id();
  const int64_t id = logger_->begin(*trainer_);
  if (plan_.finetune) {
    // A fine-tune's spec is in the run row from the start: `train --resume`
    // rebuilds a stopped or killed fine-tune from it.
    const bool recorded = !plan_.adapter.empty();
    if (!recorded) plan_.adapter = run_adapter_dir(store_->path(), id);
    const nlohmann::json lora = finetune_.summary(plan_.adapter);
    logger_->summary_extra()["lora"] = lora;
    if (!recorded) store_->set_summary(id, {{"lora", lora}});
    saver_->set_finetune(lora);
  }
  return id;
}

TrainSummary PreparedRun::train() {
  if (!logger_) return trainer_->train();
  begin();
  TrainSummary sum;
  try {
    sum = trainer_->train();
  } catch (const std::exception& e) {
    logger_->fail(e.what());
    throw;
  }
  if (!logger_->finished()) logger_->fail("training ended without a summary");
  return sum;
}

std::unique_ptr<PreparedRun> launch_run(const RunSpec& spec) {
  std::unique_ptr<PreparedRun> r(new PreparedRun);
  // Open the database first: a bad path fails before anything else.
  if (spec.record)
    r->store_ = std::make_unique<ExperimentStore>(
        spec.db_path.empty() ? default_db_path() : spec.db_path, spec.store);
  r->plan_ = plan_run(spec, r->store_.get());  // every check, before any data is read
  RunPlan& plan = r->plan_;
  TrainConfig& t = plan.preset.train;

  const std::string text = read_dataset(plan);
  if (plan.finetune) {
    try {
      r->finetune_ = build_finetune(*plan.finetune);
    } catch (const CheckpointError& e) {
      if (plan.kind != RunKind::kResume) throw;
      throw CheckpointError("base checkpoint of LoRA" + of_run(plan) + ": " + e.what());
    }
    r->tokenizer_ = std::move(r->finetune_.tokenizer);
    r->model_ = std::move(r->finetune_.model);
    plan.preset.model = r->model_->config();
    if (!plan.weights_from.empty()) load_trainable_weights(plan.weights_from, *r->model_);
    r->data_ = load_dataset(plan, text, *r->tokenizer_, t.val_fraction);
  } else if (plan.grpo) {
    r->tokenizer_ = build_tokenizer(plan, text);
    r->prompts_ = std::make_unique<PromptSet>(text, plan.data_path, *r->tokenizer_, t.val_fraction);
    r->data_ = token_view(r->prompts_->text(), *r->tokenizer_, t);
    r->model_ = std::make_unique<LanguageModel>(plan.preset.model);
    load_model_weights(plan.weights_from, *r->model_);
  } else if (plan.preference) {
    r->tokenizer_ = build_tokenizer(plan, text);
    r->preference_ =
        std::make_unique<PreferenceData>(text, plan.data_path, *r->tokenizer_, t.val_fraction);
    r->data_ = token_view(r->preference_->chosen_text(), *r->tokenizer_, t);
    r->model_ = std::make_unique<LanguageModel>(plan.preset.model);
    load_model_weights(plan.weights_from, *r->model_);
  } else {
    r->tokenizer_ = build_tokenizer(plan, text);
    plan.preset.model.vocab_size = r->tokenizer_->vocab_size();
    try {
      r->data_ = load_dataset(plan, text, *r->tokenizer_, t.val_fraction);
    } catch (const std::invalid_argument& e) {
      if (plan.kind == RunKind::kDistill && !dynamic_cast<const ConfigError*>(&e) &&
          plan.tokenizer.empty())
        throw std::runtime_error(plan.data_path + ": cannot be encoded with the " +
                                 teacher_name(*plan.distill) + "'s tokenizer (" + e.what() +
                                 "); a student reads its data with its teacher's tokenizer");
      if (plan.kind != RunKind::kFork || dynamic_cast<const ConfigError*>(&e)) throw;
      throw std::runtime_error(plan.data_path + ": cannot be encoded with" + of_run(plan) +
                               "'s tokenizer (" + e.what() +
                               "); pass --tokenizer to build a new one");
    }
    r->model_ = std::make_unique<LanguageModel>(plan.preset.model);
    if (plan.init_weights) {
      Rng rng(uint64_t(t.seed));
      r->model_->init_weights(rng);
    }
    if (!plan.weights_from.empty()) {
      try {
        load_model_weights(plan.weights_from, *r->model_);
      } catch (const CheckpointError& e) {
        if (plan.kind != RunKind::kFork) throw;
        throw CheckpointError(std::string(e.what()) +
                              "; the overrides changed the model's shapes: add --fresh to start "
                              "the fork from newly initialised weights");
      }
    }
  }
  r->trainer_ = std::make_unique<Trainer>(*r->model_, t, *r->data_);
  if (plan.distill) {
    r->teacher_ = load_teacher(*plan.distill, *r->tokenizer_);
    r->trainer_->set_teacher(r->teacher_.get(), float(plan.distill->temperature),
                             float(plan.distill->alpha));
  }
  if (plan.preference) set_reference(*r, plan);
  if (plan.grpo) {
    // The frozen reference of the KL penalty, for the whole run.
    r->reference_ = std::make_unique<LanguageModel>(plan.preset.model);
    try {
      load_model_weights(plan.grpo->base_checkpoint, *r->reference_);
    } catch (const CheckpointError& e) {
      throw CheckpointError("the reference of the GRPO run: " + std::string(e.what()));
    }
    r->grpo_ =
        std::make_unique<GrpoObjective>(*r->prompts_, *r->reference_, *r->tokenizer_,
                                        Reward::parse(plan.grpo->reward), plan.grpo->options);
    r->trainer_->set_grpo(r->grpo_.get());
  }
  if (!plan.trainer_state_from.empty()) load_trainer_state(plan.trainer_state_from, *r->trainer_);
  // First callback: its end-of-run report is in the summary the logger writes.
  r->flops_ = std::make_unique<FlopsMeter>(r->model_->flops_per_token(t.seq_len),
                                           r->trainer_->tokens_per_step());
  r->trainer_->add_callback(r->flops_.get());
  // Every run, recorded or not: they add step metrics (see on_step_metrics).
  r->system_ = std::make_unique<SystemMetrics>();
  r->trainer_->add_callback(r->system_.get());
  r->diagnostics_ = std::make_unique<Diagnostics>(t.diagnostics_interval);
  r->trainer_->add_callback(r->diagnostics_.get());
  if (!spec.record) return r;

  // The run record names what was trained from the plan alone.
  RunRecord rec = plan.record;
  if (spec.distributed.world_size > 1) {
    rec.machine = this_machine_json();  // threads: of each rank
    rec.machine["distributed"] = {{"world_size", spec.distributed.world_size},
                                  {"hosts", spec.distributed.hosts}};
  }
  const DatasetFingerprint fp = fingerprint_dataset(plan.data_path);
  rec.dataset_path = fp.path;
  rec.dataset_size = fp.size;
  rec.dataset_sha256 = fp.sha256;
  rec.tokenizer = r->tokenizer_->to_json();
  rec.sweep_id = spec.sweep_id;
  rec.sweep_trial = spec.sweep_trial;
  if (plan.kind == RunKind::kResume && !spec.sweep_id && plan.parent) {
    rec.sweep_id = plan.parent->sweep_id;  // a resumed trial stays in its sweep
    rec.sweep_trial = plan.parent->sweep_trial;
  }
  if (plan.finetune && !plan.adapter.empty())
    rec.summary = {{"lora", r->finetune_.summary(plan.adapter)}};
  if (plan.distill) {
    // In the row from the start: `train --resume` reloads this teacher.
    rec.summary = {{"distill", plan.distill->to_json()}};
    plan.summary_extra["distill"] = plan.distill->to_json();
    if (plan.kind == RunKind::kDistill) rec.tags.push_back("distill");
  }
  if (plan.preference) {
    // In the row from the start: `train --resume` recomputes this reference.
    rec.summary = {{"dpo", plan.preference->to_json()}};
    plan.summary_extra["dpo"] = plan.preference->to_json();
    if (plan.kind == RunKind::kPreference) rec.tags.push_back("dpo");
  }
  if (plan.grpo) {
    // In the row from the start: `train --resume` rebuilds this objective.
    rec.summary = {{"grpo", plan.grpo->to_json()}};
    plan.summary_extra["grpo"] = plan.grpo->to_json();
    if (plan.kind == RunKind::kGrpo) rec.tags.push_back("grpo");
  }
  r->logger_ = std::make_unique<StoreLogger>(*r->store_, rec);
  for (auto& [key, value] : plan.summary_extra.items()) r->logger_->summary_extra()[key] = value;
  r->flops_->set_sink(&r->logger_->summary_extra());
  if (plan.kind == RunKind::kResume)
    r->logger_->summary_extra()["resumed_from"] = {{"run", plan.parent->id},
                                                   {"step", r->trainer_->step()},
                                                   {"checkpoint", plan.trainer_state_from}};

  // Savers before the logger: the final checkpoint and adapter are on disk and
  // registered before the run is finished.
  CheckpointPolicy policy;
  policy.interval = t.checkpoint_interval;
  policy.keep_last = plan.keep_checkpoints;
  ExperimentStore* store = r->store_.get();
  StoreLogger* logger = r->logger_.get();
  r->saver_ = std::make_unique<CheckpointSaver>(
      *r->tokenizer_, policy,
      [store, logger](int64_t step) {
        return run_checkpoint_dir(store->path(), logger->run_id(), step);
      },
      [logger](int64_t step, const std::string& dir) { logger->add_checkpoint(step, dir); });
  r->trainer_->add_callback(r->saver_.get());
  if (plan.finetune) {
    // Every checkpoint interval and at the end: a killed fine-tune keeps its last adapter.
    const RunPlan* p = &r->plan_;
    // PEFT's base_model_name_or_path: the base checkpoint, a directory that loads.
    r->adapter_saver_ = std::make_unique<AdapterSaver>(
        [p] { return p->adapter; }, t.checkpoint_interval, nullptr,
        std::filesystem::absolute(plan.finetune->base_checkpoint).string());
    r->trainer_->add_callback(r->adapter_saver_.get());
  }
  r->trainer_->add_callback(r->logger_.get());
  return r;
}

nlohmann::json PreparedRun::rank_spec() const {
  return {{"preset", preset_to_json(plan_.preset)},
          {"data", plan_.data_path},
          {"tokenizer", tokenizer_->name()},
          {"tokenizer_json", tokenizer_->to_json()},
          {"trainer_state_from", plan_.trainer_state_from}};
}

std::unique_ptr<PreparedRun> launch_rank(const nlohmann::json& rank_spec,
                                         const DistributedSpec& distributed) {
  RunSpec spec;
  spec.config = preset_from_json(rank_spec.at("preset"));  // resolved: no overrides to apply
  spec.data_path = rank_spec.at("data").get<std::string>();
  spec.tokenizer = rank_spec.at("tokenizer").get<std::string>();
  spec.record = false;
  spec.distributed = distributed;
  std::unique_ptr<PreparedRun> r = launch_run(spec);
  if (r->tokenizer().to_json() != rank_spec.at("tokenizer_json"))
    throw std::runtime_error(
        spec.data_path + " on " + host_name() +
        " gives another vocabulary than on rank 0's host: every rank must read the same data "
        "file (a shared path, or identical copies)");
  const std::string state = rank_spec.at("trainer_state_from").get<std::string>();
  // Weights come from rank 0 (distribute); the optimizer state is too large
  // to send at start-up for nothing: it is in the checkpoint.
  if (!state.empty()) load_trainer_state(state, r->trainer());
  return r;
}

void PreparedRun::distribute(Communicator& comm) {
  trainer_->set_communicator(&comm);
  // One broadcast of every weight. A fresh run's seeded initialisation is the
  // same on every rank already, but a fork's weights come from rank 0's
  // checkpoint, and this makes any difference (another host's libm) harmless.
  FlatBuffer weights(model_->parameters(), FlatBuffer::Field::kValue);
  weights.gather();
  comm.broadcast(weights.data(), weights.size() * int64_t(sizeof(float)), 0);
  weights.scatter();
  int64_t step = trainer_->step();
  comm.broadcast(&step, sizeof step, 0);
  if (step != trainer_->step())
    throw std::runtime_error("rank " + std::to_string(comm.rank()) + " continues from step " +
                             std::to_string(trainer_->step()) + ", rank 0 from step " +
                             std::to_string(step));
}

nlohmann::json finish_resume_if_done(const RunSpec& spec) {
  if (spec.kind != RunKind::kResume || !spec.parent_run_id || spec.train.max_steps) return nullptr;
  ExperimentStore store(spec.db_path.empty() ? default_db_path() : spec.db_path, spec.store);
  const auto run = store.get_run(*spec.parent_run_id);
  if (!run || run->status == RunStatus::kRunning || run->status == RunStatus::kCompleted)
    return nullptr;  // launch_run explains what is wrong, or trains it
  const auto ck = latest_checkpoint(store, run->id);
  if (!ck) return nullptr;
  verify_checkpoint(ck->path, ck->sha256);
  return finish_from_final_checkpoint(store, *run, *ck);
}

}  // namespace bl
