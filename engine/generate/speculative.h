// Greedy speculative decoding (Leviathan et al. 2023, the temperature-0
// case): a small draft model proposes `draft_tokens` tokens one at a time,
// the target checks them all in one forward pass and keeps the longest
// prefix it agrees with plus its own next token. The output is the target's
// greedy output; the target runs one pass per round instead of per token.
// Rejected tokens are undone by restoring cloned decoding states, so every
// mixer (KV caches and recurrent states) works.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/model.h"

namespace bl {

struct SpeculativeResult {
  std::vector<int32_t> tokens;  // the continuation
  int64_t rounds = 0;           // target forward passes after the prompt
  int64_t drafted = 0;          // draft tokens proposed
  int64_t accepted = 0;         // of them, kept
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
};

/// Up to max_new_tokens greedy tokens of `target` after prompt, stopping
/// where the context would pass either model's max_seq_len. The models must
/// share the vocabulary. on_token may return false to stop early.
SpeculativeResult speculative_generate(LanguageModel& target, LanguageModel& draft,
                                       const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                                       int64_t draft_tokens,
                                       const std::function<bool(int32_t)>& on_token = {});

}  // namespace bl
