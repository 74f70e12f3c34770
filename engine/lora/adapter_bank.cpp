#include "lora/adapter_bank.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ops/check.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

AdapterBank::AdapterBank(int64_t in, int64_t out, int64_t max_rank,
                         std::shared_ptr<const BatchRouting> routing)
    : in_(in), out_(out), max_rank_(max_rank), routing_(std::move(routing)) {}

void AdapterBank::set(int32_t id, int64_t rank, float scaling, const float* a, const float* b) {
  if (id < 0) throw std::invalid_argument("adapter id must be >= 0");
  if (rank < 1 || rank > max_rank_)
    throw std::invalid_argument("adapter rank " + std::to_string(rank) +
                                " is outside [1, max_rank = " + std::to_string(max_rank_) + "]");
  const size_t n = std::max(rank_.size(), size_t(id) + 1);
  rank_.resize(n, 0);
  scaling_.resize(n, 0.0f);
  a_.resize(n * size_t(max_rank_ * in_), 0.0f);
  b_.resize(n * size_t(out_ * max_rank_), 0.0f);
  rank_[size_t(id)] = rank;
  scaling_[size_t(id)] = scaling;
  float* ad = a_.data() + size_t(id) * size_t(max_rank_ * in_);
  float* bd = b_.data() + size_t(id) * size_t(out_ * max_rank_);
  std::fill(ad, ad + max_rank_ * in_, 0.0f);
  std::fill(bd, bd + out_ * max_rank_, 0.0f);
  std::memcpy(ad, a, sizeof(float) * size_t(rank * in_));
  for (int64_t o = 0; o < out_; ++o)
    std::memcpy(bd + o * max_rank_, b + o * rank, sizeof(float) * size_t(rank));
}

Tensor AdapterBank::apply(const Tensor& x, const Tensor& y) const {
  Graph& g = current_graph();
  op_check(!g.needs_grad({x, y}), "adapter_bank",
           "multi-adapter batches are inference-only: run them under NoGradGuard");
  const std::vector<int32_t>& ids = routing_->adapter;
  if (ids.empty()) return y;  // no routing set: the base model alone
  const int64_t seqs = int64_t(ids.size());
  op_check(x.rows() % seqs == 0 && y.rows() == x.rows(), "adapter_bank",
           "input " + x.shape().str() + " does not split into the " + std::to_string(seqs) +
               " sequences of the adapter routing");
  const int64_t T = x.rows() / seqs;
  Tensor out = g.empty(y.shape());
  std::memcpy(out.data(), y.data(), sizeof(float) * size_t(y.numel()));
  float* h = g.alloc(seqs * T * max_rank_);
  parallel_for(seqs, [&](int64_t s) {
    const int32_t id = ids[size_t(s)];
    const int64_t r = rank(id);
    if (r == 0) return;  // no adapter for this row (or none in this layer)
    const float* a = a_.data() + size_t(id) * size_t(max_rank_ * in_);
    const float* b = b_.data() + size_t(id) * size_t(out_ * max_rank_);
    float* hs = h + s * T * max_rank_;
    // Only the adapter's own r rows / columns take part: padding costs no FLOPs.
    gemm(false, true, T, r, in_, 1.0f, x.data() + s * T * in_, in_, a, in_, 0.0f, hs, max_rank_);
    gemm(false, true, T, out_, r, scaling_[size_t(id)], hs, max_rank_, b, max_rank_, 1.0f,
         out.data() + s * T * out_, out_);
  });
  return out;
}

}  // namespace bl
