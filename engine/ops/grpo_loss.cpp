// GRPO over per-token log-probabilities: N * T numbers per step, a scalar loop
// in double (the work is in the logits' token_logprob).
#include "ops/grpo_loss.h"

#include <algorithm>
#include <cmath>

#include "ops/check.h"
#include "tensor/graph.h"

namespace bl {

Tensor grpo_loss(const Tensor& token_logp, const Tokens& scored, const float* advantage,
                 const float* old_logp, const float* ref_logp, float eps, float beta,
                 GrpoParts* parts) {
  op_check(token_logp.defined() && token_logp.rank() == 2, "grpo_loss",
           "token log-probabilities must be (N, T), got " +
               (token_logp.defined() ? token_logp.shape().str() : std::string("(none)")));
  const int64_t n = token_logp.shape()[0], t = token_logp.shape()[1];
  op_check(scored.numel() == n * t && scored.data, "grpo_loss",
           "scored ids " + scored.shape.str() + " do not match " + token_logp.shape().str());
  op_check(advantage && ref_logp, "grpo_loss", "advantages and reference values are required");
  op_check(std::isfinite(eps) && eps >= 0 && std::isfinite(beta) && beta >= 0, "grpo_loss",
           "eps and beta must be >= 0");
  Graph& g = current_graph();
  Tensor loss = g.empty(Shape{1}, g.needs_grad({token_logp}));
  // d loss / d logp per token, kept for the backward (the arena outlives the caller's buffers).
  float* dlp = g.alloc(std::max<int64_t>(n * t, 1));
  const float* lp = token_logp.data();
  double total = 0, kl_sum = 0, clipped = 0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t len = 0;
    for (int64_t j = 0; j < t; ++j) len += scored.data[i * t + j] >= 0;
    const double a = advantage[i];
    for (int64_t j = 0; j < t; ++j) {
      const int64_t k = i * t + j;
      dlp[k] = 0.0f;
      if (scored.data[k] < 0) continue;
      const double l = lp[k], old = old_logp ? double(old_logp[k]) : l;
      const double r = std::exp(l - old), rc = std::clamp(r, 1.0 - eps, 1.0 + eps);
      // The surrogate takes the smaller term; its gradient flows only through
      // the unclipped one (the clipped term is constant in logp).
      const bool use_clipped = rc * a < r * a;
      const double d = double(ref_logp[k]) - l, kl = std::exp(d) - d - 1.0;
      const double w = 1.0 / (double(len) * double(n));
      total += -((use_clipped ? rc * a : r * a) - double(beta) * kl) * w;
      // d/dlogp of -(r a - beta KL): -(r a - beta (1 - exp(d))).
      dlp[k] = float(-((use_clipped ? 0.0 : r * a) - double(beta) * (1.0 - std::exp(d))) * w);
      kl_sum += kl;
      clipped += (r < 1.0 - eps || r > 1.0 + eps) ? 1.0 : 0.0;
      ++tokens;
    }
  }
  loss.data()[0] = float(total);
  if (parts) {
    parts->kl = tokens ? kl_sum / double(tokens) : 0.0;
    parts->clip_fraction = tokens ? clipped / double(tokens) : 0.0;
  }
  if (loss.requires_grad()) {
    g.on_backward([=] {
      const float* dy = loss.grad();
      if (!dy) return;
      float* dx = current_graph().grad(token_logp);
      for (int64_t k = 0; k < n * t; ++k) dx[k] += dy[0] * dlp[k];
    });
  }
  return loss;
}

}  // namespace bl
