// Autoregressive sampling with a KV cache / recurrent state: the prompt is
// consumed in one forward pass, then one token per step.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/model.h"
#include "tensor/rng.h"

namespace bl {

struct SamplingOptions {
  float temperature = 1.0f;  // 0 = greedy (argmax)
  int64_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // nucleus; 1 = off
  int64_t max_new_tokens = 200;
  /// CTRL-style penalty on every token already in the context (prompt and
  /// output): a positive logit is divided by it, a negative one multiplied.
  /// 1 = off; > 1 discourages repeats.
  float repetition_penalty = 1.0f;
};

/// Applies opt.repetition_penalty in place to logits (V floats) for the ids in context.
void apply_repetition_penalty(float* logits, int64_t vocab, const std::vector<int32_t>& context,
                              float penalty);

/// log softmax of one row of logits, in double.
std::vector<double> log_softmax(const float* logits, int64_t vocab);

/// Draws one token id from logits (V floats) under the options.
int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& opt, Rng& rng);

/// Continues `prompt` (non-empty) by up to max_new_tokens tokens and returns
/// only the new ones. on_token may return false to stop early. Once the context
/// would exceed max_seq_len, each step re-encodes the last max_seq_len tokens.
std::vector<int32_t> generate(LanguageModel& model, const std::vector<int32_t>& prompt,
                              const SamplingOptions& opt, Rng& rng,
                              const std::function<bool(int32_t)>& on_token = {});

/// Continues several prompts of equal length in one batch (one KV cache of
/// batch B): every step samples one token per row, row i drawing from rngs[i],
/// so a row gives the same tokens as generating it alone with that Rng. With a
/// MultiAdapter (lora/multi_adapter.h) and set_batch(ids), row i runs with
/// adapter ids[i]. Stops after max_new_tokens or when the context reaches
/// max_seq_len. Throws std::invalid_argument on empty / unequal / too long
/// prompts or rngs.size() != prompts.size().
std::vector<std::vector<int32_t>> generate_batch(LanguageModel& model,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 const SamplingOptions& opt,
                                                 std::vector<Rng>& rngs);

}  // namespace bl
