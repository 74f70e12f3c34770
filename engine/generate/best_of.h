// Best-of-N: N sampled continuations in one batch, ranked by their
// log-probability under the model (the plain distribution, before the
// temperature, top-k/top-p and repetition penalty used to draw them).
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"
#include "generate/sampler.h"
#include "tensor/rng.h"

namespace bl {

struct ScoredSequence {
  std::vector<int32_t> tokens;
  double log_prob = 0;
};

/// Draws n continuations of prompt (row i from its own Rng, seeded from rng),
/// returns all n, highest log_prob first.
std::vector<ScoredSequence> best_of_n(LanguageModel& model, const std::vector<int32_t>& prompt,
                                      const SamplingOptions& opt, int64_t n, Rng& rng);

}  // namespace bl
