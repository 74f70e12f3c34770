// Base of the local-attention GQA variants (sliding window, chunked): each query
// sees only keys from a first position first_key(pos) on, so the decoding cache
// keeps just the keys some future query can still see, never max_len rows.
#pragma once

#include "core/attention/gqa.h"

namespace bl {

/// Bounded KV cache: the keys and values of positions [length - rows, length),
/// at most `capacity` rows per sequence, oldest first.
struct LocalKVCacheState : CloneableState<LocalKVCacheState> {
  int64_t capacity = 0, width = 0;  // width = n_kv_heads * head_dim
  int64_t rows = 0;
  Buffer k, v;  // (batch, capacity, width)

 protected:
  std::vector<Buffer*> batch_buffers() override { return {&k, &v}; }
};

class LocalGQA : public GQA {
 public:
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  double mixing_flops_per_token(int64_t seq_len) const override;

  /// First absolute key position the query at absolute position `pos` attends to.
  virtual int64_t first_key(int64_t pos) const = 0;
  /// Most keys before a query any query needs: max over pos of pos - first_key(pos).
  virtual int64_t cache_capacity() const = 0;
  /// Keys the query at `pos` of a seq_len sequence is charged in the FLOP count:
  /// its whole span as if unmasked (GQA's convention charges all seq_len keys).
  virtual int64_t charged_keys(int64_t pos, int64_t seq_len) const = 0;

 protected:
  using GQA::GQA;
  Tensor attend_cached(const Tensor& q, const Tensor& k, const Tensor& v, AttentionOptions opt,
                       LayerState& state) override;
};

}  // namespace bl
