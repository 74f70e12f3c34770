#include "train/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "tensor/parallel.h"

namespace bl {

namespace {

constexpr int64_t kChunk = 16384;

struct Span {
  float* g;
  int64_t n;
};

// Gradient chunks of the distinct trainable params, in parameter order.
std::vector<Span> grad_chunks(const std::vector<Parameter*>& params) {
  std::vector<Span> out;
  std::unordered_set<const Parameter*> seen;
  for (Parameter* p : params) {
    if (!p || !p->trainable() || !p->grad() || !seen.insert(p).second) continue;
    const int64_t n = p->numel();
    for (int64_t b = 0; b < n; b += kChunk) out.push_back({p->grad() + b, std::min(kChunk, n - b)});
  }
  return out;
}

}  // namespace

double global_grad_norm(const std::vector<Parameter*>& params) {
  const std::vector<Span> chunks = grad_chunks(params);
  std::vector<double> partial(chunks.size());
  parallel_for(
      int64_t(chunks.size()),
      [&](int64_t k) {
        const float* g = chunks[size_t(k)].g;
        const int64_t n = chunks[size_t(k)].n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; ++i) s += double(g[i]) * double(g[i]);
        partial[size_t(k)] = s;
      },
      4);
  double total = 0.0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm) {
  const double norm = global_grad_norm(params);
  if (!std::isfinite(norm) || !(max_norm > 0.0)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  const float c = float(coef);
  const std::vector<Span> chunks = grad_chunks(params);
  parallel_for(
      int64_t(chunks.size()),
      [&](int64_t k) {
        float* g = chunks[size_t(k)].g;
        const int64_t n = chunks[size_t(k)].n;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) g[i] *= c;
      },
      4);
  return norm;
}

}  // namespace bl
