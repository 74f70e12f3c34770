#include "core/ffn/moe_routing.h"

#include <algorithm>
#include <cmath>

#include "core/aux_outputs.h"
#include "core/config.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/grouped_linear.h"
#include "ops/index.h"
#include "ops/matmul.h"
#include "ops/row_reduce.h"
#include "ops/shape_ops.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
// Index of the best eligible entry of v (ties to the lower index), or -1.
int64_t best_of(const float* v, const uint8_t* eligible, int64_t n) {
  int64_t best = -1;
  for (int64_t e = 0; e < n; ++e)
    if (eligible[e] && (best < 0 || v[e] > v[best])) best = e;
  return best;
}
}  // namespace

int64_t routed_experts(const BlockConfig& c, const char* ffn) {
  BlockConfig b = c;
  b.ffn = ffn;
  std::vector<std::string> errors;
  for (const std::string& e : validation_errors(b))
    if (e.find("expert") != std::string::npos || e.find("moe_") != std::string::npos)
      errors.push_back(e);
  if (!errors.empty()) throw ConfigError(errors);
  return *c.n_experts;
}

void select_top_k(const float* scores, const float* bias, int64_t n, int64_t n_experts, int64_t k,
                  int64_t n_groups, int64_t topk_groups, int32_t* out) {
  Graph& g = current_graph();
  const int64_t E = n_experts, G = std::max<int64_t>(1, n_groups), per_group = E / G;
  float* biased = g.alloc(n * E);
  float* group_score = g.alloc(n * G);
  uint8_t* eligible = g.alloc_as<uint8_t>(n * (E + G));
  parallel_for(
      n,
      [&](int64_t t) {
        float* v = biased + t * E;
        uint8_t* ok = eligible + t * (E + G);
        for (int64_t e = 0; e < E; ++e) v[e] = scores[t * E + e] + (bias ? bias[e] : 0.0f);
        std::fill(ok, ok + E, uint8_t(1));
        if (G > 1) {
          // Group score: sum of the group's two best biased scores (DeepSeek V3).
          float* gs = group_score + t * G;
          uint8_t* gok = ok + E;
          for (int64_t gi = 0; gi < G; ++gi) {
            const float* gv = v + gi * per_group;
            float a = -INFINITY, b = -INFINITY;
            for (int64_t e = 0; e < per_group; ++e) {
              if (gv[e] > a) {
                b = a;
                a = gv[e];
              } else if (gv[e] > b) {
                b = gv[e];
              }
            }
            gs[gi] = per_group >= 2 ? a + b : a;
            gok[gi] = 1;
          }
          std::fill(ok, ok + E, uint8_t(0));
          for (int64_t j = 0; j < topk_groups; ++j) {
            const int64_t gb = best_of(gs, gok, G);
            gok[gb] = 0;
            std::fill(ok + gb * per_group, ok + (gb + 1) * per_group, uint8_t(1));
          }
        }
        for (int64_t j = 0; j < k; ++j) {
          const int64_t e = best_of(v, ok, E);
          ok[e] = 0;
          out[t * k + j] = int32_t(e);
        }
      },
      std::max<int64_t>(1, 2048 / std::max<int64_t>(E * k, 1)));
}

Dispatch make_dispatch(const int32_t* expert, int64_t n_tokens, int64_t k, int64_t n_experts) {
  Graph& g = current_graph();
  Dispatch d;
  d.rows = n_tokens * k;
  d.token = g.alloc_as<int32_t>(d.rows);
  d.slot = g.alloc_as<int32_t>(d.rows);
  d.offsets = g.alloc_as<int64_t>(n_experts + 1);
  int64_t* next = g.alloc_as<int64_t>(n_experts);
  std::fill(d.offsets, d.offsets + n_experts + 1, int64_t(0));
  for (int64_t s = 0; s < d.rows; ++s) ++d.offsets[expert[s] + 1];
  for (int64_t e = 0; e < n_experts; ++e) {
    d.offsets[e + 1] += d.offsets[e];
    next[e] = d.offsets[e];
  }
  for (int64_t s = 0; s < d.rows; ++s) {
    const int64_t pos = next[expert[s]]++;
    d.token[pos] = int32_t(s / k);
    d.slot[pos] = int32_t(s);
  }
  return d;
}

ExpertBank::ExpertBank(int64_t n_experts, int64_t d_in, int64_t d_ff, bool bias, Kind kind)
    : kind_(kind) {
  const int64_t E = n_experts;
  if (kind == Kind::kSwiGLU) {
    gate_w_ = add_parameter("gate_proj.weight", Shape{E, d_ff, d_in});
    if (bias) gate_b_ = add_parameter("gate_proj.bias", Shape{E, d_ff}, Init::kZeros);
  }
  up_w_ = add_parameter("up_proj.weight", Shape{E, d_ff, d_in});
  if (bias) up_b_ = add_parameter("up_proj.bias", Shape{E, d_ff}, Init::kZeros);
  down_w_ = add_parameter("down_proj.weight", Shape{E, d_in, d_ff}, Init::kResidualNormal);
  if (bias) down_b_ = add_parameter("down_proj.bias", Shape{E, d_in}, Init::kZeros);
  per_expert_ = num_parameters() / E;
}

Tensor ExpertBank::forward(const Tensor& xs, const Dispatch& d) {
  auto opt = [](Parameter* p) { return p ? p->tensor() : Tensor(); };
  Tensor up = grouped_linear(xs, up_w_->tensor(), opt(up_b_), d.offsets);
  Tensor h = kind_ == Kind::kSwiGLU
                 ? swiglu(grouped_linear(xs, gate_w_->tensor(), opt(gate_b_), d.offsets), up)
                 : relu2(up);
  return grouped_linear(h, down_w_->tensor(), opt(down_b_), d.offsets);
}

Tensor run_experts(ExpertBank& experts, const Tensor& x, const Tensor& gates, const Dispatch& d,
                   int64_t k) {
  const int64_t n = x.rows();
  Tensor ys = experts.forward(gather_rows(x, d.token, d.rows), d);
  Tensor w = gather_rows(reshape(gates, Shape{n * k, 1}), d.slot, d.rows);
  return scatter_add_rows(ys, d.token, n, w);
}

Tensor normalized_gates(const Tensor& scores, const int32_t* sel, int64_t k, float s) {
  Tensor picked = take_along_rows(scores, sel, k);
  // Top-1 (Switch, Llama 4) gates by the score itself: normalised over one pick it
  // would be constant 1 and the router would get no gradient from the loss.
  if (k == 1) return s == 1.0f ? picked : scale(picked, s);
  // The epsilon only guards a softmax that underflowed to zero everywhere picked.
  Tensor gates = div(picked, add_scalar(row_sum(picked), 1e-20f));
  return s == 1.0f ? gates : scale(gates, s);
}

void ExpertLoad::observe(const Dispatch& d, int64_t layer) {
  const int64_t E = int64_t(pending_.size());
  if (names_layer_ != layer) {
    names_.clear();
    for (int64_t e = 0; e < E; ++e)
      names_.push_back("moe_load/layer" + std::to_string(layer) + "/expert" + std::to_string(e));
    names_layer_ = layer;
  }
  const double rows = double(std::max<int64_t>(d.rows, 1));
  for (int64_t e = 0; e < E; ++e)
    aux_outputs().add_metric(names_[size_t(e)], double(d.count(e)) / rows);
  if (current_graph().grad_enabled())
    for (int64_t e = 0; e < E; ++e) pending_[size_t(e)] += d.count(e);
}

bool ExpertLoad::update_bias(float* bias, double rate) {
  int64_t total = 0;
  for (int64_t c : pending_) total += c;
  if (total == 0) return false;
  const double mean = double(total) / double(pending_.size());
  for (size_t e = 0; e < pending_.size(); ++e) {
    const double err = mean - double(pending_[e]);  // > 0: under-loaded, raise its bias
    bias[e] += float(rate * double((err > 0) - (err < 0)));
    pending_[e] = 0;
  }
  return true;
}

BalancedRouter::BalancedRouter(const BlockConfig& c, const char* ffn)
    : n_experts_(routed_experts(c, ffn)),
      k_(c.top_k_experts),
      n_groups_(c.moe_n_groups),
      topk_groups_(c.moe_topk_groups),
      scale_(float(c.moe_routed_scaling_factor)),
      rate_(c.moe_bias_update_rate),
      load_(n_experts_) {
  weight_ = add_parameter("weight", Shape{n_experts_, c.d_model});
  bias_ = add_parameter("expert_bias", Shape{n_experts_}, Init::kZeros);
  bias_->set_trainable(false);
}

BalancedRouter::Routing BalancedRouter::route(const Tensor& x, int64_t layer) {
  const int64_t n = x.rows();
  Tensor scores = sigmoid(linear(x, weight_->tensor()));
  int32_t* sel = current_graph().alloc_as<int32_t>(n * k_);
  select_top_k(scores.data(), bias_->data(), n, n_experts_, k_, n_groups_, topk_groups_, sel);
  Routing r{normalized_gates(scores, sel, k_, scale_), sel, make_dispatch(sel, n, k_, n_experts_)};
  load_.observe(r.dispatch, layer);
  return r;
}

void BalancedRouter::after_optimizer_step() {
  load_.update_bias(bias_->data(), rate_);
}

}  // namespace bl
