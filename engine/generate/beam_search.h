// Beam search on the decoding-state path: the `beams` most likely
// continuations are extended one token at a time in one batch, the state's
// rows reordered to follow the surviving beams (LayerState::select_rows).
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"

namespace bl {

struct BeamOptions {
  int64_t beams = 4;
  int64_t max_new_tokens = 50;
  /// A hypothesis ends when it emits this id (-1: none; char/byte
  /// vocabularies have no end-of-text token, so every beam runs to the end).
  int32_t eos_id = -1;
  /// Finished hypotheses are ranked by log_prob / length^length_penalty
  /// (0 = pure log-probability, as the unfinished ones).
  double length_penalty = 0.0;
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // the continuation (without the prompt)
  double log_prob = 0;          // sum of the tokens' log-probabilities
  double score = 0;             // log_prob with the length penalty applied
};

/// The best `beams` continuations of prompt, best first. Stops after
/// max_new_tokens or when the context reaches max_seq_len. Throws
/// std::invalid_argument on an empty or too long prompt or beams < 1.
std::vector<Hypothesis> beam_search(LanguageModel& model, const std::vector<int32_t>& prompt,
                                    const BeamOptions& opt);

/// One step of the search: from each beam's score and its next-token
/// log-probabilities (beams x vocab, row-major), the best `keep` (beam, token)
/// pairs by score + log p, ties broken by lower beam then lower token.
struct BeamCandidate {
  int64_t beam;
  int32_t token;
  double log_prob;
};
std::vector<BeamCandidate> best_candidates(const std::vector<double>& beam_scores,
                                           const std::vector<double>& next_log_probs, int64_t vocab,
                                           int64_t keep);

}  // namespace bl
