// Sparse attention in the DeepSeek / NSA style on GQA projections: three
// branches over the same (RoPE'd) queries, keys and values, summed before the
// output projection:
//  (a) compressed: keys and values mean-pooled over blocks of
//      sparse_compress_ratio tokens (no extra parameters, so the compressed
//      scores measure how well a query matches a block's average key); a query
//      attends to the blocks complete at its position;
//  (b) selected: per query and kv head, the sparse_select_k complete blocks
//      with the most compressed-branch probability (summed over the kv head's
//      query heads) are attended token by token; the choice is an index, not
//      differentiated;
//  (c) sliding window over window_size tokens; unset = sparse_compress_ratio,
//      the smallest window that covers every token of the query's own,
//      still incomplete block, so each past token reaches the query through
//      the window or through its block.
// Decoding keeps GQA's full K/V cache (any past block may be selected) and
// re-pools the complete blocks from it (cached rows are constants for autodiff).
// ALiBi is rejected by validation (it would bias only the window branch).
#pragma once

#include "core/attention/gqa.h"

namespace bl {

class SparseGQA : public GQA {
 public:
  explicit SparseGQA(const BlockConfig& c);
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  // forward() is its own, so not GQA's fused residual add.
  Tensor forward_add(const Tensor& x, PositionEncoding& pos, LayerState* state,
                     const Tensor& residual) override {
    return Attention::forward_add(x, pos, state, residual);
  }
  double mixing_flops_per_token(int64_t seq_len) const override;

 private:
  int64_t ratio_, select_k_, window_;
};

}  // namespace bl
