// Causal depthwise convolution. The kernel is transposed to (K, C) once so
// every tap is a contiguous, vectorisable row operation over the channels.
// Work is split into (batch, block of time steps) tasks; the weight gradient
// is summed per task into its own partial and reduced in task order, so
// results do not depend on the thread count.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/causal_conv1d.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <cstring>
#include <string>

#include "ops/causal_conv1d.h"
#include "ops/check.h"
#include "simd/isa.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace {

constexpr int64_t kSteps = 64;  // time steps per task

// Row of the (virtual) input at time `idx` of sequence b, or null for zeros.
inline const float* input_row(const float* x, const float* prefix, int64_t b, int64_t idx,
                              int64_t T, int64_t C, int64_t K) {
  if (idx >= 0) return x + (b * T + idx) * C;
  if (!prefix) return nullptr;
  return prefix + (b * (K - 1) + (K - 1 + idx)) * C;
}

}  // namespace

Tensor CausalConv1d(const Tensor& x, const Tensor& w, const float* prefix) {
  op_check(x.defined() && w.defined(), "causal_conv1d", "x and w must be defined");
  op_check(x.rank() == 3, "causal_conv1d", "x must be (B, T, C), got " + x.shape().str());
  op_check(w.rank() == 2 && w.dim(0) == x.dim(2) && w.dim(1) >= 1, "causal_conv1d",
           "w must be (C, K) with C = " + std::to_string(x.dim(2)) + ", got " + w.shape().str());
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2), K = w.dim(1);
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x, w}));
  if (y.numel() == 0) return y;
  float* wt = g.alloc(K * C);  // (K, C)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < K; ++j) wt[j * C + c] = w.data()[c * K + j];
  const int64_t nblk = (T + kSteps - 1) / kSteps;
  // Tasks per thread: tiny problems run inline (a parallel region would cost more).
  const int64_t min_tasks = (B * T * C * K < (1 << 15)) ? B * nblk : 1;
  {
    const float* xd = x.data();
    float* yd = y.data();
    parallel_for(
        B * nblk,
        [&](int64_t task) {
          const int64_t b = task / nblk, t0 = (task % nblk) * kSteps, t1 = std::min(T, t0 + kSteps);
          for (int64_t t = t0; t < t1; ++t) {
            float* yr = yd + (b * T + t) * C;
            std::memset(yr, 0, sizeof(float) * size_t(C));
            for (int64_t j = 0; j < K; ++j) {
              const float* xr = input_row(xd, prefix, b, t - (K - 1) + j, T, C, K);
              if (!xr) continue;
              const float* wj = wt + j * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) yr[c] += wj[c] * xr[c];
            }
          }
        },
        min_tasks);
  }
  if (!y.requires_grad()) return y;
  g.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    float* dx = gg.grad_if_required(x);
    float* dw = gg.grad_if_required(w);
    const int64_t n_tasks = B * nblk;
    float* part = dw ? gg.alloc(n_tasks * K * C) : nullptr;  // per-task dW (K, C)
    const float* xd = x.data();
    parallel_for(
        n_tasks,
        [&](int64_t task) {
          const int64_t b = task / nblk, t0 = (task % nblk) * kSteps, t1 = std::min(T, t0 + kSteps);
          if (dx) {
            // dx[s] = Σ_j w[:, j] * dy[s + K - 1 - j] over outputs inside the sequence.
            for (int64_t s = t0; s < t1; ++s) {
              float* dxr = dx + (b * T + s) * C;
              for (int64_t j = 0; j < K; ++j) {
                const int64_t t = s + K - 1 - j;
                if (t >= T) continue;
                const float* dyr = dy + (b * T + t) * C;
                const float* wj = wt + j * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) dxr[c] += wj[c] * dyr[c];
              }
            }
          }
          if (part) {
            float* pw = part + task * K * C;
            std::memset(pw, 0, sizeof(float) * size_t(K * C));
            for (int64_t t = t0; t < t1; ++t) {
              const float* dyr = dy + (b * T + t) * C;
              for (int64_t j = 0; j < K; ++j) {
                const float* xr = input_row(xd, prefix, b, t - (K - 1) + j, T, C, K);
                if (!xr) continue;
                float* pj = pw + j * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) pj[c] += dyr[c] * xr[c];
              }
            }
          }
        },
        min_tasks);
    if (part) {
      for (int64_t task = 1; task < n_tasks; ++task) {
        const float* p = part + task * K * C;
#pragma omp simd
        for (int64_t e = 0; e < K * C; ++e) part[e] += p[e];
      }
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) dw[c * K + j] += part[j * C + c];
    }
  });
  return y;
}

void CausalConv1dAdvance(float* tail, const Tensor& x, int64_t kernel_size) {
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2), L = kernel_size - 1;
  if (L <= 0 || T == 0) return;
  for (int64_t b = 0; b < B; ++b) {
    float* tb = tail + b * L * C;
    const float* xb = x.data() + b * T * C;
    const int64_t keep = std::max<int64_t>(0, L - T);  // old rows that stay
    if (keep > 0) std::memmove(tb, tb + (L - keep) * C, sizeof(float) * size_t(keep * C));
    const int64_t take = L - keep;  // newest rows of x
    std::memcpy(tb + keep * C, xb + (T - take) * C, sizeof(float) * size_t(take * C));
  }
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(CausalConv1d);
HWY_EXPORT(CausalConv1dAdvance);

Tensor causal_conv1d(const Tensor& x, const Tensor& w, const float* prefix) {
  return BL_DISPATCH(CausalConv1d)(x, w, prefix);
}

void causal_conv1d_advance(float* tail, const Tensor& x, int64_t kernel_size) {
  BL_DISPATCH(CausalConv1dAdvance)(tail, x, kernel_size);
}

}  // namespace bl
#endif  // HWY_ONCE
