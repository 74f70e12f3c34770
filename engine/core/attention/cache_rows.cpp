#include "core/attention/cache_rows.h"

#include <cstring>

#include "tensor/graph.h"

namespace bl {

void cache_append_rows(float* cache, int64_t max_len, int64_t cache_width, const Tensor& src,
                       int64_t at, int64_t col) {
  const int64_t B = src.dim(0), T = src.dim(1), W = src.dim(2);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(cache + (b * max_len + at + t) * cache_width + col, src.data() + (b * T + t) * W,
                  sizeof(float) * W);
}

Tensor cache_prefix(const float* cache, int64_t batch, int64_t max_len, int64_t cache_width,
                    int64_t len, int64_t col, int64_t width) {
  if (width < 0) width = cache_width - col;
  Tensor t = current_graph().empty(Shape{batch, len, width});
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < len; ++i)
      std::memcpy(t.data() + (b * len + i) * width, cache + (b * max_len + i) * cache_width + col,
                  sizeof(float) * width);
  return t;
}

}  // namespace bl
