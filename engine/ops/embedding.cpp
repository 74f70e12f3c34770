#include "ops/embedding.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {
}  // namespace

Tensor embedding(const Tensor& weight, const Tokens& ids) {
  if (!weight.defined() || weight.rank() != 2)
    op_fail("embedding", std::string("weight must be 2-D (V, D), got ") +
                          (weight.defined() ? weight.shape().str() : "undefined"));
  if (ids.shape.rank >= kMaxRank)
    op_fail("embedding", "ids " + ids.shape.str() + " leave no room for the D dimension (rank <= 3)");
  const int64_t n = ids.numel(), V = weight.dim(0), D = weight.dim(1);
  if (n > 0 && !ids.data) op_fail("embedding", "ids have no data");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids.data[i];
    if (id < 0 || id >= V)
      op_fail("embedding", "token id " + std::to_string(id) + " at position " + std::to_string(i) +
                            " is outside [0, V) with V = " + std::to_string(V));
  }
  Graph& g = current_graph();
  Shape os = ids.shape;
  os.dims[os.rank++] = D;
  Tensor y = g.empty(os, g.needs_grad({weight}));
  const float* w = weight.data();
  float* yd = y.data();
  const int32_t* tok = ids.data;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(D, 1));
  parallel_for(
      n,
      [&](int64_t i) {
        std::memcpy(yd + i * D, w + int64_t(tok[i]) * D, sizeof(float) * size_t(D));
      },
      grain);
  if (y.requires_grad()) {
    // The caller's id buffer may be reused before backward: keep a copy.
    int32_t* saved = g.alloc_as<int32_t>(std::max<int64_t>(n, 1));
    if (n) std::memcpy(saved, tok, sizeof(int32_t) * size_t(n));
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* dw = current_graph().grad(weight);
      // Repeated ids hit the same row, so tokens cannot be split across
      // threads. Columns can: each thread owns a band of D (multiple of 16
      // floats, a cache line) and scans every token, in token order, so the
      // result is deterministic.
      const int64_t nt = std::max<int64_t>(
          1, std::min<int64_t>(omp_get_max_threads(), n * D / (int64_t(1) << 14)));
      const int64_t band = ((D + nt - 1) / nt + 15) / 16 * 16;
      const int64_t nb = (D + band - 1) / band;
      parallel_for(nb, [&](int64_t b) {
        const int64_t c0 = b * band, c1 = std::min(D, c0 + band);
        for (int64_t i = 0; i < n; ++i) {
          const float* __restrict s = dy + i * D;
          float* __restrict d = dw + int64_t(saved[i]) * D;
          for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
        }
      });
    });
  }
  return y;
}

}  // namespace bl
