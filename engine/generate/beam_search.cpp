#include "generate/beam_search.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "generate/sampler.h"
#include "tensor/graph.h"

namespace bl {

std::vector<BeamCandidate> best_candidates(const std::vector<double>& beam_scores,
                                           const std::vector<double>& next_log_probs, int64_t vocab,
                                           int64_t keep) {
  std::vector<BeamCandidate> all;
  all.reserve(beam_scores.size() * size_t(vocab));
  for (size_t b = 0; b < beam_scores.size(); ++b)
    for (int64_t v = 0; v < vocab; ++v)
      all.push_back(
          {int64_t(b), int32_t(v), beam_scores[b] + next_log_probs[b * size_t(vocab) + size_t(v)]});
  keep = std::min<int64_t>(keep, int64_t(all.size()));
  auto better = [](const BeamCandidate& a, const BeamCandidate& b) {
    if (a.log_prob != b.log_prob) return a.log_prob > b.log_prob;
    if (a.beam != b.beam) return a.beam < b.beam;
    return a.token < b.token;
  };
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), better);
  all.resize(size_t(keep));
  return all;
}

namespace {

double penalised(double log_prob, size_t length, double penalty) {
  return penalty == 0.0 ? log_prob
                        : log_prob / std::pow(double(std::max<size_t>(length, 1)), penalty);
}

}  // namespace

std::vector<Hypothesis> beam_search(LanguageModel& model, const std::vector<int32_t>& prompt,
                                    const BeamOptions& opt) {
  const int64_t max_len = model.config().block.max_seq_len;
  const int64_t vocab = model.config().vocab_size;
  const int64_t T = int64_t(prompt.size());
  if (opt.beams < 1) throw std::invalid_argument("[beam_search] beams must be >= 1");
  if (T == 0 || T > max_len)
    throw std::invalid_argument("[beam_search] the prompt must hold 1 to max_seq_len = " +
                                std::to_string(max_len) + " tokens");
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const int64_t steps = std::min(opt.max_new_tokens, max_len - T + 1);
  DecodeState state = model.make_decode_state(1, max_len);
  std::vector<Hypothesis> live(1), done;
  std::vector<int32_t> feed = prompt;
  int64_t len = T;  // tokens per row fed this step
  for (int64_t step = 0; step < steps && !live.empty(); ++step) {
    const int64_t rows = int64_t(live.size());
    Tensor logits = model.forward(Tokens{feed.data(), Shape{rows, len}}, &state);
    std::vector<double> scores(live.size()), next(size_t(rows * vocab));
    for (int64_t b = 0; b < rows; ++b) {
      scores[size_t(b)] = live[size_t(b)].log_prob;
      const auto lp = log_softmax(logits.data() + ((b + 1) * len - 1) * vocab, vocab);
      std::copy(lp.begin(), lp.end(), next.begin() + b * vocab);
    }
    g.clear();
    // Take enough candidates that `beams` unfinished ones survive an EOS.
    const auto cand = best_candidates(scores, next, vocab, 2 * opt.beams);
    std::vector<Hypothesis> kept;
    std::vector<int64_t> parents;
    for (const auto& c : cand) {
      if (int64_t(kept.size()) == opt.beams) break;
      Hypothesis h = live[size_t(c.beam)];
      h.tokens.push_back(c.token);
      h.log_prob = c.log_prob;
      h.score = penalised(h.log_prob, h.tokens.size(), opt.length_penalty);
      if (c.token == opt.eos_id) {
        done.push_back(std::move(h));
        continue;
      }
      kept.push_back(std::move(h));
      parents.push_back(c.beam);
    }
    live = std::move(kept);
    if (live.empty()) break;
    for (auto& s : state) s->select_rows(parents);
    feed.clear();
    for (const auto& h : live) feed.push_back(h.tokens.back());
    len = 1;
  }
  for (auto& h : live) done.push_back(std::move(h));
  std::stable_sort(done.begin(), done.end(),
                   [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
  if (int64_t(done.size()) > opt.beams) done.resize(size_t(opt.beams));
  return done;
}

}  // namespace bl
