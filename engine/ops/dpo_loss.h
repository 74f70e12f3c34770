// Direct Preference Optimization loss (Rafailov et al. 2023): the policy is
// pushed to prefer the chosen completion over the rejected one by more than
// the frozen reference model does, with no reward model and no sampling.
#pragma once

#include "tensor/tensor.h"

namespace bl {

/// What the last dpo_loss measured, for metrics (means over the pairs).
struct DpoParts {
  double chosen_reward = 0;    // beta * (logp_c - ref_c)
  double rejected_reward = 0;  // beta * (logp_r - ref_r)
  double margin = 0;           // chosen_reward - rejected_reward
  double accuracy = 0;         // fraction of pairs with margin > 0
};

/// policy_logp (2B): summed log-probabilities of the B chosen completions then
/// the B rejected ones (ops/cross_entropy.h sequence_logprob); ref_logp the
/// reference model's, in the same order (a constant). Returns, shape (1),
///   mean_b -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r))).
/// Throws "[dpo_loss] ..." for an odd or empty policy_logp or beta <= 0.
Tensor dpo_loss(const Tensor& policy_logp, const float* ref_logp, float beta,
                DpoParts* parts = nullptr);

}  // namespace bl
