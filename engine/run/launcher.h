// One way to start a run, for the CLI's `train`, the workbench's Start and
// whatever comes next (sweeps, data-parallel ranks): launch_run turns a RunSpec
// into a PreparedRun owning everything a run needs, ready to train. It checks
// first (run/run_plan.h: config rules, limits, memory, files) and only then
// reads the corpus, builds tokenizer, model and trainer, and attaches the
// system metrics, training diagnostics, the store logger, the checkpoint
// saver and, for a fine-tune, the adapter saver.
// The run row is created by begin() (or train()), so a launch that fails
// leaves no run behind.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/model.h"
#include "data/preference_data.h"
#include "data/prompt_data.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "eval/flops.h"
#include "lora/adapter_saver.h"
#include "lora/finetune.h"
#include "run/run_plan.h"
#include "run/run_spec.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"
#include "train/diagnostics.h"
#include "train/store_logger.h"
#include "train/system_metrics.h"
#include "train/trainer.h"

namespace bl {

class PreparedRun {
 public:
  ~PreparedRun();
  PreparedRun(const PreparedRun&) = delete;
  PreparedRun& operator=(const PreparedRun&) = delete;

  /// What is trained: config, preset name, data, parent, notes for the user.
  const RunPlan& plan() const { return plan_; }
  const Preset& preset() const { return plan_.preset; }
  // store(), logger() and checkpoints() exist only for a recorded run (RunSpec::record).
  ExperimentStore& store() { return *store_; }
  LanguageModel& model() { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const TextDataset& data() const { return *data_; }
  Trainer& trainer() { return *trainer_; }
  StoreLogger& logger() { return *logger_; }
  const CheckpointSaver& checkpoints() const { return *saver_; }
  /// FLOPs per token; after training also total FLOPs and MFU (eval/flops.h),
  /// which a recorded run also keeps in its summary.
  const FlopsMeter& flops() const { return *flops_; }
  /// The fine-tune (counts, quantization, base); nullptr for other runs.
  const Finetune* finetune() const { return plan_.finetune ? &finetune_ : nullptr; }
  /// A distillation's teacher (loaded from plan().distill); nullptr for other runs.
  const LanguageModel* teacher() const { return teacher_.get(); }
  /// A GRPO run's prompts and objective; nullptr for other runs.
  const PromptSet* prompts() const { return prompts_.get(); }
  const GrpoObjective* grpo() const { return grpo_.get(); }
  /// A DPO run's preference pairs; nullptr for other runs.
  const PreferenceData* preference() const { return preference_.get(); }
  /// Where a fine-tune's adapter is saved (known once begin() has run).
  const std::string& adapter_path() const { return plan_.adapter; }

  /// Adds a callback after the savers and the store logger: it sees a step
  /// once it is recorded, and the final checkpoint before the run ends.
  void add_callback(Callback& c) { trainer_->add_callback(&c); }
  /// Creates the run row (once) and returns its id (0 for an unrecorded run).
  int64_t begin();
  int64_t run_id() const { return logger_ ? logger_->run_id() : 0; }
  /// begin(), then trains to the end; a thrown error is recorded as the run's
  /// failure before it propagates.
  TrainSummary train();

  /// Data parallelism over processes. What the other ranks need to build this
  /// (rank 0's) run: the resolved config, data path, tokenizer and, for a
  /// resume, the checkpoint whose trainer state they load (launch_rank).
  nlohmann::json rank_spec() const;
  /// Every rank, after launching: the trainer sums gradients over `comm`'s
  /// ranks from now on, and rank 0's weights are copied to every rank (a fork
  /// or a differently initialised rank starts from the same weights).
  /// Collective: every rank calls it. `comm` must outlive the run.
  void distribute(Communicator& comm);

 private:
  friend std::unique_ptr<PreparedRun> launch_run(const RunSpec& spec);
  PreparedRun() = default;

  RunPlan plan_;
  std::unique_ptr<ExperimentStore> store_;  // first: outlives everything that records
  Finetune finetune_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<TextDataset> data_;
  std::unique_ptr<PreferenceData> preference_;  // a DPO run's pairs
  std::unique_ptr<PromptSet> prompts_;          // a GRPO run's prompts
  std::unique_ptr<LanguageModel> reference_;    // a GRPO run's (outlives the trainer)
  std::unique_ptr<GrpoObjective> grpo_;
  std::unique_ptr<LanguageModel> model_;
  std::unique_ptr<LanguageModel> teacher_;  // a distillation's (outlives the trainer)
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<FlopsMeter> flops_;
  std::unique_ptr<SystemMetrics> system_;
  std::unique_ptr<Diagnostics> diagnostics_;
  std::unique_ptr<StoreLogger> logger_;
  std::unique_ptr<CheckpointSaver> saver_;
  std::unique_ptr<AdapterSaver> adapter_saver_;
};

/// Opens the store (spec.db_path, else default_db_path()), plans and checks the
/// run, then builds it. Throws what plan_run throws, and std::runtime_error
/// naming the file or run for data, tokenizer or checkpoint problems.
std::unique_ptr<PreparedRun> launch_run(const RunSpec& spec);

/// The run of rank 0's rank_spec() on another rank: unrecorded (only rank 0
/// writes the store and checkpoints), the same config, data and tokenizer (a
/// data file that differs on this host is named), and for a resume the same
/// optimizer, step and data position, loaded from the checkpoint (on a shared
/// path across hosts). Follow with distribute().
std::unique_ptr<PreparedRun> launch_rank(const nlohmann::json& rank_spec,
                                         const DistributedSpec& distributed);

/// Directory a fine-tune's adapter goes to when no path was given.
std::string run_adapter_dir(const std::string& db_path, int64_t run_id);

/// A resume (spec.kind == kResume) that asks for no more steps, of a run whose
/// process was killed after its final checkpoint was registered: marks the run
/// completed from that checkpoint (store_logger.h: finish_from_final_checkpoint)
/// and returns its summary. Null for any other spec: launch it.
nlohmann::json finish_resume_if_done(const RunSpec& spec);

}  // namespace bl
