// GRPO as a training objective (ops/grpo_loss.h): every micro-batch samples a
// group of completions per prompt from the policy, scores them with a reward,
// normalises the rewards within each group into advantages and trains the
// policy on the clipped surrogate with a KL penalty to a frozen reference.
// One optimization step per sampled batch, so the sampling policy is the
// policy at that step (the ratio is 1 in value, its gradient the policy
// gradient; clipping would act only with several updates per batch, which is
// not offered).
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"
#include "data/prompt_data.h"
#include "data/tokenizer.h"
#include "train/rewards.h"

namespace bl {

struct GrpoOptions {
  int64_t group = 4;            // completions per prompt, >= 2
  int64_t max_new_tokens = 32;  // per completion
  float temperature = 1.0f;     // of the sampling, > 0
  float beta = 0.04f;           // KL weight, >= 0
  float eps = 0.2f;             // clip range, >= 0
  int64_t val_prompts = 64;     // greedy-scored val prompts per evaluation (the first ones)
};

struct GrpoStats {
  double reward_mean = 0, reward_std = 0;  // over the micro-batch's completions
  double kl = 0;                           // mean per scored token
  double completion_tokens = 0;            // mean per completion
};

class GrpoObjective {
 public:
  /// The prompts, reference, tokenizer and reward must outlive the objective.
  /// Throws std::invalid_argument for options out of range or, for the exact
  /// reward, prompts without a target.
  GrpoObjective(const PromptSet& prompts, LanguageModel& reference, const Tokenizer& tok,
                Reward reward, const GrpoOptions& opt);
  const GrpoOptions& options() const { return opt_; }
  const Reward& reward() const { return reward_; }

  /// Micro-batch `index`: `n_prompts` train prompts (a seeded shuffle per
  /// epoch, from the index: a resume draws the same), group completions each
  /// sampled from `policy` with per-row generators seeded by (seed, index,
  /// row), their rewards and advantages, then the policy's forward with a
  /// gradient: the loss, on the tape, to backpropagate.
  Tensor loss(LanguageModel& policy, int64_t index, int64_t n_prompts, int64_t seq_len,
              uint64_t seed, GrpoStats* stats);
  /// Mean reward of the policy's greedy completions to the first val prompts.
  double val_reward(LanguageModel& policy);

 private:
  /// The prompt as sampled: its last tokens that leave room for the completion.
  std::vector<int32_t> context_of(const PromptItem& p, const LanguageModel& m) const;

  const PromptSet& prompts_;
  LanguageModel& reference_;
  const Tokenizer& tok_;
  Reward reward_;
  GrpoOptions opt_;
  std::vector<int64_t> order_;
  int64_t epoch_ = -1;
  std::vector<int32_t> x_, y_;
  std::vector<float> ref_lp_, adv_, rewards_;
};

}  // namespace bl
