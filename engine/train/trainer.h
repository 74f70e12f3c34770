// The training loop: micro-batches with gradient accumulation, clipping,
// optimizer + schedule, periodic evaluation on fixed validation batches,
// callbacks, and thread-safe pause / single-step / stop control (a stop is
// honoured before the next micro-batch, i.e. within one step).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model.h"
#include "data/preference_data.h"
#include "data/text_dataset.h"
#include "dist/communicator.h"
#include "dist/flat_buffer.h"
#include "train/callbacks.h"
#include "train/grad_clip.h"
#include "train/grpo.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/train_config.h"

namespace bl {

class Trainer {
 public:
  /// Validates cfg against the model (ConfigError). The model's weights are used as
  /// they are: call model.init_weights() (fresh run) or load a checkpoint first.
  Trainer(LanguageModel& model, const TrainConfig& cfg, const TextDataset& data);

  void add_callback(Callback* cb) { callbacks_.push_back(cb); }
  /// Data parallelism over processes (null: this process alone, the default).
  /// Every rank draws the same global batch and trains on its rows
  /// [rank * B/N, (rank + 1) * B/N); gradients are summed over ranks in one
  /// collective on a flat buffer before clipping, so every rank takes the same
  /// optimizer step and the curve equals a 1-process run with the same batch up
  /// to float reassociation. Evaluation is split over ranks by batch. A stop
  /// requested on any rank ends every rank after the same step. Throws
  /// std::invalid_argument when batch_size is not divisible by the rank count
  /// or the model is not data_parallel_safe(). Call before train().
  void set_communicator(Communicator* comm);
  /// Knowledge distillation (null: plain training). Every micro-batch the
  /// teacher's logits for the same tokens are computed without a gradient and
  /// the model trains on ops/distill_loss.h (its CE is still the reported
  /// loss; "distill_kl" and "distill_loss" are logged as extras). Runs with one
  /// replica (ops spread over the threads) and in one process: the teacher's
  /// forward is not replicated. Throws std::invalid_argument when the teacher's
  /// vocabulary differs, T <= 0, alpha is outside [0, 1] or a communicator is
  /// set. The teacher must outlive training. Call before train().
  void set_teacher(LanguageModel* teacher, float temperature, float alpha);
  const LanguageModel* teacher() const { return teacher_; }
  /// Preference optimization (DPO, ops/dpo_loss.h) instead of next-token
  /// training: every micro-batch packs batch_size pairs of `data`'s train split
  /// (a seeded shuffle per epoch, a function of the step: a resume draws the
  /// same pairs) into 2 * batch_size rows. ref_train / ref_val are the
  /// reference model's summed completion log-probabilities, (chosen, rejected)
  /// per pair (reference_logps). The reported loss and eval loss are the DPO
  /// loss (eval: over the val pairs); "dpo/reward_margin", "dpo/reward_accuracy",
  /// "dpo/chosen_reward", "dpo/rejected_reward" and at evaluations
  /// "dpo/val_reward_accuracy" / "dpo/val_reward_margin" are logged. One
  /// replica, one process. Throws std::invalid_argument for beta <= 0,
  /// reference values not matching the pairs, a communicator or a teacher.
  /// `data` must outlive training. Call before train().
  void set_preference(const PreferenceData* data, std::vector<float> ref_train,
                      std::vector<float> ref_val, float beta);
  bool preference() const { return pref_ != nullptr; }
  /// GRPO (train/grpo.h) instead of next-token training: every micro-batch is
  /// batch_size prompts, group completions each, sampled and scored by the
  /// objective. The reported loss is the GRPO loss; the eval loss is minus the
  /// mean greedy reward on the val prompts (lower is better, as for a loss),
  /// also logged as "grpo/val_reward"; "grpo/reward_mean", "grpo/reward_std",
  /// "grpo/kl" and "grpo/completion_tokens" are logged per step. One replica,
  /// one process. Throws std::invalid_argument with a communicator, teacher or
  /// preference data. `objective` must outlive training. Call before train().
  void set_grpo(GrpoObjective* objective);
  const GrpoObjective* grpo() const { return grpo_; }
  /// Runs from step() to horizon(), or until stopped, diverged or out of time
  /// (TrainConfig::time_budget_s).
  TrainSummary train();
  /// Mean loss over the fixed validation batches.
  double evaluate();

  // Control, callable from any thread.
  void request_stop(const std::string& reason = "stop requested");
  void pause();
  void resume();
  /// While paused: run exactly one more step, then stay paused.
  void step_once();
  bool paused() const { return paused_.load(); }
  bool stop_requested() const { return stop_.load(); }

  int64_t step() const { return step_; }
  /// Data-parallel replicas of the current / last train() (1: op-parallel).
  int replicas() const { return replicas_; }
  /// Continue from a later step (after loading a checkpoint).
  void set_step(int64_t s) { step_ = s; }
  const TrainConfig& config() const { return cfg_; }
  /// The step training ends at: max_steps, or fewer when the FLOP budget
  /// (TrainConfig::flop_budget) is spent first. The lr schedule ends here too.
  int64_t horizon() const { return horizon_; }
  LanguageModel& model() { return model_; }
  Optimizer& optimizer() { return *optimizer_; }
  BatchSampler& sampler() { return sampler_; }
  const LrSchedule& schedule() const { return schedule_; }
  /// Tokens through the model per step (a DPO step runs 2 rows per pair, a
  /// GRPO step a group per prompt).
  int64_t tokens_per_step() const {
    return cfg_.batch_size * cfg_.seq_len * cfg_.grad_accumulation_steps * rows_per_sample_;
  }

 private:
  /// Blocks while paused; false if a stop was requested.
  bool wait_turn();
  StepMetrics& train_step();
  /// This process's batch_rows rows of the micro-batch, from token `offset`,
  /// split over replicas_ threads, each running its own forward/backward
  /// single-threaded on batch_rows / replicas_ rows; returns
  /// the micro-batch's mean loss. Gradients land in the replicas' buffers.
  double data_parallel_micro_step(float grad_scale, int64_t batch_rows, int64_t offset);
  /// Packs micro-batch `index`'s pairs into x_ / y_ and their reference
  /// log-probabilities into ref_batch_.
  void next_preference_batch(int64_t index);
  /// Mean DPO loss over the val pairs (records the val reward metrics).
  double evaluate_preference();
  /// Adds every replica's gradient into replica 0's (the parameters' own).
  void reduce_replica_grads();
  /// Sums gradients, the step's loss and the stop flag over ranks.
  double reduce_across_ranks(double local_loss_sum);
  int world_size() const { return comm_ ? comm_->size() : 1; }
  /// Adds w * (this micro-batch's aux losses and metrics) into metrics_.extra, by name.
  void accumulate_aux(double w);
  /// Adds v to metrics_.extra's entry `name` (created the first time).
  void add_extra(const std::string& name, double v);
  StepMetrics metrics_;         // reused every step (see train_step)
  std::vector<char> aux_seen_;  // per metrics_.extra entry: emitted this step

  LanguageModel& model_;
  TrainConfig cfg_;
  int64_t horizon_;                 // see horizon(); before schedule_, which is built from it
  std::vector<Parameter*> params_;  // trainable
  std::unique_ptr<Optimizer> optimizer_;
  GradClipper clipper_;
  LrSchedule schedule_;
  BatchSampler sampler_;
  FixedBatches eval_;
  std::vector<int32_t> x_, y_;  // one micro-batch
  std::vector<Callback*> callbacks_;
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
  // Data-parallel replicas (threads), chosen in train(): 1 = every op spreads
  // over the threads instead.
  int replicas_ = 1;
  // Distillation (set_teacher).
  LanguageModel* teacher_ = nullptr;
  float temperature_ = 2.0f, alpha_ = 0.5f;
  // Preference optimization (set_preference).
  const PreferenceData* pref_ = nullptr;
  std::vector<float> ref_train_, ref_val_, ref_batch_;
  float beta_ = 0.1f;
  std::vector<int64_t> pair_order_;  // this epoch's shuffle of the train pairs
  int64_t pair_epoch_ = -1;
  std::vector<const PreferencePair*> batch_pairs_;
  DpoParts val_parts_;
  // GRPO (set_grpo).
  GrpoObjective* grpo_ = nullptr;
  double val_reward_ = 0;
  int64_t rows_per_sample_ = 1;  // model rows per batch entry: 2 for DPO, the group for GRPO
  // Data parallelism over processes (set_communicator).
  Communicator* comm_ = nullptr;
  std::unique_ptr<FlatBuffer> flat_grads_;
  std::vector<double> eval_losses_;  // per validation batch, summed over ranks
  bool stop_agreed_ = false;         // some rank asked to stop: all stop after this step

  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::atomic<int64_t> single_steps_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::string stop_reason_;
  std::string budget_reason_;  // set when this rank's time budget ended the run
};

/// Optimizer hyperparameters from a TrainConfig.
OptimizerOptions optimizer_options(const TrainConfig& cfg);

}  // namespace bl
