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
};

/// Draws one token id from logits (V floats) under the options.
int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& opt, Rng& rng);

/// Continues `prompt` (non-empty) by up to max_new_tokens tokens and returns
/// only the new ones. on_token may return false to stop early. Once the context
/// would exceed max_seq_len, each step re-encodes the last max_seq_len tokens.
std::vector<int32_t> generate(LanguageModel& model, const std::vector<int32_t>& prompt,
                              const SamplingOptions& opt, Rng& rng,
                              const std::function<bool(int32_t)>& on_token = {});

}  // namespace bl
