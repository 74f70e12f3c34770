// Row copies between the graph and persistent decoding caches laid out
// (batch, max_len, width), shared by the attention components that keep
// their own cache layouts (MLA's latent, sparse attention's keys/values).
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// Writes the rows of src (B, T, W) at positions [at, at + T), columns [col, col + W)
/// of cache (B, max_len, cache_width).
void cache_append_rows(float* cache, int64_t max_len, int64_t cache_width, const Tensor& src,
                       int64_t at, int64_t col = 0);
/// Graph tensor (B, len, W) holding columns [col, col + W) of the first len rows of
/// cache (B, max_len, cache_width). No gradient: cached values are constants.
Tensor cache_prefix(const float* cache, int64_t batch, int64_t max_len, int64_t cache_width,
                    int64_t len, int64_t col = 0, int64_t width = -1);

}  // namespace bl
