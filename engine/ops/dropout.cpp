#include "ops/dropout.h"

#include <algorithm>
#include <string>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
}  // namespace

Tensor dropout(const Tensor& x, float p, bool training, Rng& rng) {
  // Written so NaN fails too.
  if (!(p >= 0.0f && p < 1.0f)) op_fail("dropout", "p must be in [0, 1), got " + std::to_string(p));
  if (!x.defined()) op_fail("dropout", "undefined operand");
  if (!training || p == 0.0f) return x;
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x}));
  const int64_t n = x.numel();
  // The mask is drawn serially so a seed gives the same mask for any thread
  // count; it stays in the arena for the backward pass.
  uint8_t* keep = g.alloc_as<uint8_t>(std::max<int64_t>(n, 1));
  for (int64_t i = 0; i < n; ++i) keep[i] = rng.uniform() >= double(p) ? 1 : 0;
  const float s = 1.0f / (1.0f - p);
  const float* xd = x.data();
  float* yd = y.data();
  constexpr int64_t kChunk = 1 << 14;
  const int64_t nc = (n + kChunk - 1) / kChunk;
  // Multiplying by 0 or s (not selecting) keeps NaN/inf visible and vectorises;
  // __restrict because uint8_t may otherwise alias the float buffers.
  parallel_for(nc, [&](int64_t c) {
    const int64_t hi = std::min(n, (c + 1) * kChunk);
    const uint8_t* __restrict kp = keep;
    const float* __restrict xp = xd;
    float* __restrict yp = yd;
    for (int64_t i = c * kChunk; i < hi; ++i) yp[i] = xp[i] * (float(kp[i]) * s);
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dx = current_graph().grad(x);
      parallel_for(nc, [&](int64_t c) {
        const int64_t hi = std::min(n, (c + 1) * kChunk);
        const uint8_t* __restrict kp = keep;
        const float* __restrict dyp = dy;
        float* __restrict dxp = dx;
        for (int64_t i = c * kChunk; i < hi; ++i) dxp[i] += dyp[i] * (float(kp[i]) * s);
      });
    });
  }
  return y;
}

}  // namespace bl
