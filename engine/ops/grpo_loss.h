// Group Relative Policy Optimization loss (Shao et al. 2024, DeepSeekMath):
// a clipped policy-gradient surrogate with group-normalised advantages and a
// per-token KL penalty to a frozen reference, no value model.
#pragma once

#include <cstdint>

#include "ops/embedding.h"
#include "tensor/tensor.h"

namespace bl {

/// What the last grpo_loss measured (means over scored tokens).
struct GrpoParts {
  double kl = 0;             // the k3 estimator below
  double clip_fraction = 0;  // tokens whose ratio left [1 - eps, 1 + eps]
};

/// token_logp (N, T): the policy's log-probability of each sampled token
/// (ops/cross_entropy.h token_logprob); scored: (N, T) ids, >= 0 where a
/// completion token is scored; advantage (N): one per completion; old_logp and
/// ref_logp (N * T): the sampling policy's and the reference's (constants;
/// old_logp null = the policy's own values, ratio 1: one update per sample).
/// Returns, shape (1),
///   mean_i 1/|o_i| sum_t -[min(r A_i, clip(r, 1 - eps, 1 + eps) A_i) - beta KL_t]
/// with r = exp(logp - old), KL_t = exp(ref - logp) - (ref - logp) - 1 (the
/// unbiased, non-negative k3 estimator). A completion with no scored token
/// counts 0. Throws "[grpo_loss] ..." on mismatched shapes, eps < 0 or beta < 0.
Tensor grpo_loss(const Tensor& token_logp, const Tokens& scored, const float* advantage,
                 const float* old_logp, const float* ref_logp, float eps, float beta,
                 GrpoParts* parts = nullptr);

}  // namespace bl
