#include "train/grpo.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "data/epoch_order.h"
#include "data/preference_data.h"
#include "generate/sampler.h"
#include "ops/cross_entropy.h"
#include "ops/grpo_loss.h"
#include "tensor/graph.h"

namespace bl {

GrpoObjective::GrpoObjective(const PromptSet& prompts, LanguageModel& reference,
                             const Tokenizer& tok, Reward reward, const GrpoOptions& opt)
    : prompts_(prompts), reference_(reference), tok_(tok), reward_(std::move(reward)), opt_(opt) {
  if (opt.group < 2)
    throw std::invalid_argument(
        "GRPO group size must be >= 2 (advantages compare a group's "
        "completions), got " +
        std::to_string(opt.group));
  if (opt.max_new_tokens < 1 || opt.max_new_tokens >= reference.config().block.max_seq_len)
    throw std::invalid_argument("GRPO max_new_tokens must be in [1, max_seq_len = " +
                                std::to_string(reference.config().block.max_seq_len) + "), got " +
                                std::to_string(opt.max_new_tokens));
  if (!(opt.temperature > 0 && std::isfinite(opt.temperature)))
    throw std::invalid_argument("GRPO temperature must be > 0");
  if (!(opt.beta >= 0 && std::isfinite(opt.beta)) || !(opt.eps >= 0 && std::isfinite(opt.eps)))
    throw std::invalid_argument("GRPO beta and clip eps must be >= 0");
  if (reward_.needs_target() && !prompts.all_have_targets())
    throw std::invalid_argument(
        "reward exact compares completions with each prompt's \"target\", "
        "but some prompts have none");
  order_.resize(prompts.train().size());
}

std::vector<int32_t> GrpoObjective::context_of(const PromptItem& p, const LanguageModel& m) const {
  const size_t room = size_t(m.config().block.max_seq_len - opt_.max_new_tokens);
  if (p.ids.size() <= room) return p.ids;
  return {p.ids.end() - long(room), p.ids.end()};
}

Tensor GrpoObjective::loss(LanguageModel& policy, int64_t index, int64_t n_prompts, int64_t seq_len,
                           uint64_t seed, GrpoStats* stats) {
  const int64_t G = opt_.group, N = n_prompts * G, n = int64_t(prompts_.train().size());
  x_.assign(size_t(N * seq_len), 0);
  y_.assign(size_t(N * seq_len), -1);
  rewards_.assign(size_t(N), 0.0f);
  adv_.assign(size_t(N), 0.0f);
  SamplingOptions so;
  so.temperature = opt_.temperature;
  so.max_new_tokens = opt_.max_new_tokens;
  double completion_tokens = 0;
  for (int64_t b = 0; b < n_prompts; ++b) {
    const int64_t k = index * n_prompts + b, epoch = k / n;
    if (epoch != epoch_) {
      epoch_order(order_, seed, epoch);
      epoch_ = epoch;
    }
    const PromptItem& p = prompts_.train()[size_t(order_[size_t(k % n)])];
    const std::vector<int32_t> ctx = context_of(p, policy);
    std::vector<std::vector<int32_t>> outs;
    {
      NoGradGuard no_grad;
      std::vector<std::vector<int32_t>> rows(size_t(G), ctx);
      std::vector<Rng> rngs;
      for (int64_t r = 0; r < G; ++r)
        rngs.emplace_back((seed ^ 0x5bd1e995ULL) * 1000003ULL + uint64_t(k) * 64 + uint64_t(r));
      outs = generate_batch(policy, rows, so, rngs);
    }
    double mean = 0, var = 0;
    for (int64_t r = 0; r < G; ++r) {
      const int64_t row = b * G + r;
      rewards_[size_t(row)] = float(reward_(p.text, tok_.decode(outs[size_t(r)]), p.target));
      mean += rewards_[size_t(row)] / double(G);
      completion_tokens += double(outs[size_t(r)].size());
      pack_completion(ctx, outs[size_t(r)], seq_len, x_.data() + row * seq_len,
                      y_.data() + row * seq_len);
    }
    for (int64_t r = 0; r < G; ++r)
      var += std::pow(rewards_[size_t(b * G + r)] - mean, 2) / double(G);
    const double sd = std::sqrt(var);
    for (int64_t r = 0; r < G; ++r)  // a group whose rewards are all equal teaches nothing
      adv_[size_t(b * G + r)] = sd > 1e-8 ? float((rewards_[size_t(b * G + r)] - mean) / sd) : 0.0f;
  }
  const Shape s{N, seq_len};
  const Tokens xs{x_.data(), s}, ys{y_.data(), s};
  {
    NoGradGuard no_grad;
    Tensor ref = token_logprob(reference_.forward(xs, nullptr, false), ys);
    ref_lp_.assign(ref.data(), ref.data() + N * seq_len);
    current_graph().clear();  // the reference's activations are not needed again
  }
  GrpoParts parts;
  Tensor lp = token_logprob(policy.forward(xs, nullptr, true), ys);
  Tensor loss =
      grpo_loss(lp, ys, adv_.data(), nullptr, ref_lp_.data(), opt_.eps, opt_.beta, &parts);
  if (stats) {
    double m = 0, v = 0;
    for (float r : rewards_) m += r / double(N);
    for (float r : rewards_) v += (r - m) * (r - m) / double(N);
    stats->reward_mean = m;
    stats->reward_std = std::sqrt(v);
    stats->kl = parts.kl;
    stats->completion_tokens = completion_tokens / double(N);
  }
  return loss;
}

double GrpoObjective::val_reward(LanguageModel& policy) {
  NoGradGuard no_grad;
  SamplingOptions so;
  so.temperature = 0;
  so.max_new_tokens = opt_.max_new_tokens;
  const auto& val = prompts_.val();
  const size_t n = std::min<size_t>(val.size(), size_t(std::max<int64_t>(1, opt_.val_prompts)));
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    Rng rng(0);  // unused by greedy decoding
    const std::vector<int32_t> out = generate(policy, context_of(val[i], policy), so, rng);
    total += reward_(val[i].text, tok_.decode(out), val[i].target);
  }
  current_graph().clear();
  return total / double(n);
}

}  // namespace bl
