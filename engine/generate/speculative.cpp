#include "generate/speculative.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "tensor/graph.h"

namespace bl {

namespace {

int32_t argmax_row(const Tensor& logits, int64_t row, int64_t vocab) {
  const float* p = logits.data() + row * vocab;
  return int32_t(std::max_element(p, p + vocab) - p);
}

DecodeState clone_state(const DecodeState& s) {
  DecodeState c;
  for (const auto& l : s) c.push_back(l->clone());
  return c;
}

// Feeds ids to model through state; returns the logits (1, n, vocab).
Tensor feed(LanguageModel& model, DecodeState& state, const std::vector<int32_t>& ids) {
  return model.forward(Tokens{ids.data(), Shape{1, int64_t(ids.size())}}, &state);
}

}  // namespace

SpeculativeResult speculative_generate(LanguageModel& target, LanguageModel& draft,
                                       const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                                       int64_t draft_tokens,
                                       const std::function<bool(int32_t)>& on_token) {
  const int64_t vocab = target.config().vocab_size;
  if (draft.config().vocab_size != vocab)
    throw std::invalid_argument("[speculative] the draft's vocabulary (" +
                                std::to_string(draft.config().vocab_size) +
                                ") differs from the target's (" + std::to_string(vocab) + ")");
  if (draft_tokens < 1) throw std::invalid_argument("[speculative] draft_tokens must be >= 1");
  const int64_t max_len =
      std::min(target.config().block.max_seq_len, draft.config().block.max_seq_len);
  const int64_t T = int64_t(prompt.size());
  if (T == 0 || T > max_len)
    throw std::invalid_argument("[speculative] the prompt must hold 1 to " +
                                std::to_string(max_len) + " tokens (both models' max_seq_len)");
  NoGradGuard no_grad;
  Graph& g = current_graph();
  SpeculativeResult r;
  // The context never exceeds max_len: a state holds at most max_len tokens.
  const int64_t limit = std::min(max_new_tokens, max_len - T + 1);
  if (limit <= 0) return r;
  DecodeState ts = target.make_decode_state(1, max_len);
  DecodeState ds = draft.make_decode_state(1, max_len);
  int32_t last = argmax_row(feed(target, ts, prompt), T - 1, vocab);
  g.clear();
  feed(draft, ds, prompt);
  g.clear();
  auto emit = [&](int32_t id) {
    r.tokens.push_back(id);
    return !on_token || on_token(id);
  };
  if (!emit(last)) return r;
  // Invariant: both states hold the prompt and every emitted token but `last`.
  while (int64_t(r.tokens.size()) < limit) {
    const int64_t held = T + int64_t(r.tokens.size()) - 1;
    // Draft k tokens; the target then holds held + k + 1 <= max_len tokens.
    const int64_t k =
        std::min({draft_tokens, limit - int64_t(r.tokens.size()), max_len - held - 1});
    if (k < 1) {  // no room left to draft: one plain step of the target
      const int32_t next = argmax_row(feed(target, ts, {last}), 0, vocab);
      g.clear();
      if (!emit(next)) return r;
      last = next;
      continue;
    }
    DecodeState ds0 = clone_state(ds);
    std::vector<int32_t> proposal{last};
    for (int64_t i = 0; i < k; ++i) {
      proposal.push_back(argmax_row(feed(draft, ds, {proposal.back()}), 0, vocab));
      g.clear();
    }
    DecodeState ts0 = clone_state(ts);
    Tensor logits = feed(target, ts, proposal);  // proposal = last, d1..dk
    int64_t n = 0;
    while (n < k && argmax_row(logits, n, vocab) == proposal[size_t(n + 1)]) ++n;
    const int32_t next = argmax_row(logits, n, vocab);
    g.clear();
    ++r.rounds;
    r.drafted += k;
    r.accepted += n;
    // Keep what both models agreed on: the states must hold last, d1..dn.
    const std::vector<int32_t> kept(proposal.begin(), proposal.begin() + n + 1);
    if (n < k) {
      ts = std::move(ts0);
      feed(target, ts, kept);
      g.clear();
    }
    if (n == k) {  // the draft holds last, d1..d(k-1): only dk is missing
      feed(draft, ds, {proposal[size_t(k)]});
    } else {
      ds = std::move(ds0);
      feed(draft, ds, kept);
    }
    g.clear();
    for (int64_t i = 1; i <= n; ++i)
      if (!emit(proposal[size_t(i)]) || int64_t(r.tokens.size()) >= limit) return r;
    if (!emit(next)) return r;
    last = next;
  }
  return r;
}

}  // namespace bl
