// DPO over per-sequence log-probabilities: 2B numbers per step, so a scalar
// loop in double (the work is in the logits' sequence_logprob).
#include "ops/dpo_loss.h"

#include <cmath>
#include <cstring>

#include "ops/check.h"
#include "tensor/graph.h"

namespace bl {

namespace {

// -log sigmoid(z) = softplus(-z), without overflow for large |z|.
double neg_log_sigmoid(double z) {
  return z >= 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
}

}  // namespace

Tensor dpo_loss(const Tensor& policy_logp, const float* ref_logp, float beta, DpoParts* parts) {
  op_check(policy_logp.defined() && policy_logp.rank() == 1 && policy_logp.numel() > 0 &&
               policy_logp.numel() % 2 == 0,
           "dpo_loss",
           "policy log-probabilities must be (2B): B chosen then B rejected, got " +
               (policy_logp.defined() ? policy_logp.shape().str() : std::string("(none)")));
  op_check(ref_logp != nullptr, "dpo_loss", "reference log-probabilities are missing");
  op_check(std::isfinite(beta) && beta > 0.0f, "dpo_loss",
           "beta must be > 0, got " + std::to_string(beta));
  const int64_t pairs = policy_logp.numel() / 2;
  Graph& g = current_graph();
  Tensor loss = g.empty(Shape{1}, g.needs_grad({policy_logp}));
  // Per pair, d loss / d margin_b = -sigmoid(-z_b) / B with z_b = beta * margin_b:
  // kept for the backward (the arena outlives the caller's buffers).
  float* dz = g.alloc(pairs);
  const float* lp = policy_logp.data();
  DpoParts p;
  double total = 0;
  for (int64_t b = 0; b < pairs; ++b) {
    const double rc = double(beta) * (double(lp[b]) - double(ref_logp[b]));
    const double rr = double(beta) * (double(lp[pairs + b]) - double(ref_logp[pairs + b]));
    const double z = rc - rr;
    total += neg_log_sigmoid(z);
    dz[b] = float(-1.0 / (1.0 + std::exp(z)) / double(pairs));  // -sigmoid(-z) / B
    p.chosen_reward += rc;
    p.rejected_reward += rr;
    p.accuracy += z > 0 ? 1.0 : 0.0;
  }
  loss.data()[0] = float(total / double(pairs));
  if (parts) {
    p.chosen_reward /= double(pairs);
    p.rejected_reward /= double(pairs);
    p.margin = p.chosen_reward - p.rejected_reward;
    p.accuracy /= double(pairs);
    *parts = p;
  }
  if (loss.requires_grad()) {
    g.on_backward([=] {
      const float* dy = loss.grad();
      if (!dy) return;
      float* dx = current_graph().grad(policy_logp);
      for (int64_t b = 0; b < pairs; ++b) {
        const float d = dy[0] * beta * dz[b];
        dx[b] += d;          // chosen: d z / d logp_c = beta
        dx[pairs + b] -= d;  // rejected: d z / d logp_r = -beta
      }
    });
  }
  return loss;
}

}  // namespace bl
