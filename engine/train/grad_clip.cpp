#include "train/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "simd/span_ops.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
constexpr int64_t kChunk = 16384;
}  // namespace

GradClipper::GradClipper(const std::vector<Parameter*>& params) {
  // Chunks of the distinct trainable params, in parameter order (fixed order:
  // the norm is identical for any thread count).
  std::unordered_set<const Parameter*> seen;
  for (Parameter* p : params) {
    if (!p || !p->trainable() || !p->grad() || !seen.insert(p).second) continue;
    const int64_t n = p->numel();
    for (int64_t b = 0; b < n; b += kChunk)
      chunks_.push_back({p->grad() + b, std::min(kChunk, n - b)});
  }
  partial_.resize(chunks_.size());
}

double GradClipper::norm() {
  parallel_for(
      int64_t(chunks_.size()),
      [&](int64_t k) {
        partial_[size_t(k)] = span_sum_squares(chunks_[size_t(k)].g, chunks_[size_t(k)].n);
      },
      4);
  double total = 0.0;
  for (double s : partial_) total += s;
  return std::sqrt(total);
}

double GradClipper::clip(double max_norm) {
  const double n = norm();
  if (!std::isfinite(n) || !(max_norm > 0.0)) return n;
  const double coef = max_norm / (n + 1e-6);  // torch's rule
  if (coef >= 1.0) return n;
  const float c = float(coef);
  parallel_for(
      int64_t(chunks_.size()),
      [&](int64_t k) { span_scale(chunks_[size_t(k)].g, chunks_[size_t(k)].n, c); }, 4);
  return n;
}

double global_grad_norm(const std::vector<Parameter*>& params) {
  return GradClipper(params).norm();
}

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm) {
  return GradClipper(params).clip(max_norm);
}

}  // namespace bl
