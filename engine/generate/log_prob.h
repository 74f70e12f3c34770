// Log-probability of a continuation under a model, from one full forward pass
// without a decoding state: the plain reference that beam search, best-of-N
// and speculative decoding are checked against.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"

namespace bl {

/// Sum over the continuation of log p(token | everything before it).
/// prompt must be non-empty; prompt + continuation at most max_seq_len tokens.
double sequence_log_prob(LanguageModel& model, const std::vector<int32_t>& prompt,
                         const std::vector<int32_t>& continuation);

}  // namespace bl
