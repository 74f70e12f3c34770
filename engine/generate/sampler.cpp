#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "tensor/graph.h"

namespace bl {

int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& opt, Rng& rng) {
  if (opt.temperature <= 0.0f) return int32_t(std::max_element(logits, logits + vocab) - logits);
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  int64_t keep = vocab;
  if (opt.top_k > 0) keep = std::min(keep, opt.top_k);
  std::vector<double> p(static_cast<size_t>(keep));
  const double top = double(logits[ids[0]]);
  double z = 0;
  for (int64_t i = 0; i < keep; ++i)
    z += p[size_t(i)] = std::exp((double(logits[ids[size_t(i)]]) - top) / opt.temperature);
  if (opt.top_p < 1.0f) {
    // Smallest prefix whose mass reaches top_p (at least one token).
    double mass = 0;
    int64_t n = 0;
    while (n < keep) {
      mass += p[size_t(n)] / z;
      ++n;
      if (mass >= opt.top_p) break;
    }
    keep = n;
    z = 0;
    for (int64_t i = 0; i < keep; ++i) z += p[size_t(i)];
  }
  double u = rng.uniform() * z;
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[size_t(i)];
    if (u <= 0) return ids[size_t(i)];
  }
  return ids[size_t(keep - 1)];
}

void apply_repetition_penalty(float* logits, int64_t vocab, const std::vector<int32_t>& context,
                              float penalty) {
  if (penalty == 1.0f) return;
  if (!(penalty > 0.0f) || !std::isfinite(penalty))
    throw std::invalid_argument("[generate] repetition_penalty must be finite and > 0");
  std::vector<char> seen(size_t(vocab), 0);
  for (int32_t id : context)
    if (id >= 0 && id < vocab && !seen[size_t(id)]) {
      seen[size_t(id)] = 1;
      float& l = logits[id];
      l = l > 0.0f ? l / penalty : l * penalty;
    }
}

std::vector<double> log_softmax(const float* logits, int64_t vocab) {
  std::vector<double> out(static_cast<size_t>(vocab));
  const double top = double(*std::max_element(logits, logits + vocab));
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - top);
  const double lz = top + std::log(z);
  for (int64_t i = 0; i < vocab; ++i) out[size_t(i)] = double(logits[i]) - lz;
  return out;
}

std::vector<int32_t> generate(LanguageModel& model, const std::vector<int32_t>& prompt,
                              const SamplingOptions& opt, Rng& rng,
                              const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) throw std::invalid_argument("[generate] prompt must not be empty");
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const int64_t max_len = model.config().block.max_seq_len;
  const int64_t vocab = model.config().vocab_size;
  std::vector<int32_t> context = prompt;
  if (int64_t(context.size()) > max_len) context.erase(context.begin(), context.end() - max_len);
  std::vector<int32_t> out;
  DecodeState state = model.make_decode_state(1, max_len);
  bool cached = true;  // false once the context has outgrown max_seq_len
  std::vector<int32_t> step_ids = context;
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    Tensor logits;
    if (cached) {
      Tokens t{step_ids.data(), Shape{1, int64_t(step_ids.size())}};
      logits = model.forward(t, &state);
    } else {
      std::vector<int32_t> window(context.end() - max_len, context.end());
      Tokens t{window.data(), Shape{1, max_len}};
      logits = model.forward(t);
    }
    const int64_t last = logits.dim(1) - 1;
    float* row = logits.data() + last * vocab;
    apply_repetition_penalty(row, vocab, context, opt.repetition_penalty);
    int32_t next = sample_token(row, vocab, opt, rng);
    g.clear();
    out.push_back(next);
    context.push_back(next);
    if (on_token && !on_token(next)) break;
    if (cached && int64_t(context.size()) > max_len) cached = false;
    step_ids.assign(1, next);
  }
  return out;
}

std::vector<std::vector<int32_t>> generate_batch(LanguageModel& model,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 const SamplingOptions& opt,
                                                 std::vector<Rng>& rngs) {
  const int64_t B = int64_t(prompts.size());
  if (B == 0 || int64_t(rngs.size()) != B)
    throw std::invalid_argument("[generate_batch] need one Rng per prompt and at least one prompt");
  const int64_t T = int64_t(prompts[0].size());
  const int64_t max_len = model.config().block.max_seq_len;
  for (const auto& p : prompts)
    if (int64_t(p.size()) != T || T == 0 || T > max_len)
      throw std::invalid_argument(
          "[generate_batch] prompts must be non-empty, of equal length and at most max_seq_len = " +
          std::to_string(max_len) + " tokens");
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const int64_t vocab = model.config().vocab_size;
  const int64_t steps = std::min(opt.max_new_tokens, max_len - T + 1);
  DecodeState state = model.make_decode_state(B, max_len);
  std::vector<int32_t> ids;
  for (const auto& p : prompts) ids.insert(ids.end(), p.begin(), p.end());
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(B));
  int64_t len = T;
  for (int64_t i = 0; i < steps; ++i) {
    Tensor logits = model.forward(Tokens{ids.data(), Shape{B, len}}, &state);
    std::vector<int32_t> next(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      float* row = logits.data() + ((b + 1) * len - 1) * vocab;
      if (opt.repetition_penalty != 1.0f) {
        std::vector<int32_t> seen = prompts[size_t(b)];
        seen.insert(seen.end(), out[size_t(b)].begin(), out[size_t(b)].end());
        apply_repetition_penalty(row, vocab, seen, opt.repetition_penalty);
      }
      next[size_t(b)] = sample_token(row, vocab, opt, rngs[size_t(b)]);
      out[size_t(b)].push_back(next[size_t(b)]);
    }
    g.clear();
    ids = next;
    len = 1;
  }
  return out;
}

}  // namespace bl
