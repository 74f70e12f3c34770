#include "generate/best_of.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "tensor/graph.h"

namespace bl {

std::vector<ScoredSequence> best_of_n(LanguageModel& model, const std::vector<int32_t>& prompt,
                                      const SamplingOptions& opt, int64_t n, Rng& rng) {
  const int64_t max_len = model.config().block.max_seq_len;
  const int64_t vocab = model.config().vocab_size;
  const int64_t T = int64_t(prompt.size());
  if (n < 1) throw std::invalid_argument("[best_of_n] n must be >= 1");
  if (T == 0 || T > max_len)
    throw std::invalid_argument("[best_of_n] the prompt must hold 1 to max_seq_len = " +
                                std::to_string(max_len) + " tokens");
  std::vector<Rng> rngs;
  for (int64_t i = 0; i < n; ++i) rngs.emplace_back(rng.next_u64());
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const int64_t steps = std::min(opt.max_new_tokens, max_len - T + 1);
  DecodeState state = model.make_decode_state(n, max_len);
  std::vector<int32_t> feed;
  for (int64_t i = 0; i < n; ++i) feed.insert(feed.end(), prompt.begin(), prompt.end());
  std::vector<ScoredSequence> out(static_cast<size_t>(n));
  int64_t len = T;
  std::vector<float> row(static_cast<size_t>(vocab));
  for (int64_t s = 0; s < steps; ++s) {
    Tensor logits = model.forward(Tokens{feed.data(), Shape{n, len}}, &state);
    for (int64_t b = 0; b < n; ++b) {
      const float* raw = logits.data() + ((b + 1) * len - 1) * vocab;
      std::copy(raw, raw + vocab, row.begin());
      auto& seq = out[size_t(b)];
      if (opt.repetition_penalty != 1.0f) {
        std::vector<int32_t> seen = prompt;
        seen.insert(seen.end(), seq.tokens.begin(), seq.tokens.end());
        apply_repetition_penalty(row.data(), vocab, seen, opt.repetition_penalty);
      }
      const int32_t id = sample_token(row.data(), vocab, opt, rngs[size_t(b)]);
      seq.tokens.push_back(id);
      seq.log_prob += log_softmax(raw, vocab)[size_t(id)];
    }
    g.clear();
    feed.clear();
    for (const auto& seq : out) feed.push_back(seq.tokens.back());
    len = 1;
  }
  std::stable_sort(out.begin(), out.end(), [](const ScoredSequence& a, const ScoredSequence& b) {
    return a.log_prob > b.log_prob;
  });
  return out;
}

}  // namespace bl
