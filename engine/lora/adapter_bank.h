// Several LoRA adapters on one Linear at once (MAX's LinearLoRA with
// max_num_loras / max_lora_rank): adapter j holds A_j (r_j, in) and B_j (out, r_j),
// stored padded to max_rank. Each sequence of a batch names one adapter or none
// (BatchRouting), so one forward pass serves requests for different fine-tunes.
// Inference only: the bank holds plain floats, not Parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace bl {

/// Adapter id of each sequence of the batch (-1 = base model only). Shared by
/// every bank of a model, set once per forward pass.
struct BatchRouting {
  std::vector<int32_t> adapter;
};

class AdapterBank {
 public:
  AdapterBank(int64_t in, int64_t out, int64_t max_rank,
              std::shared_ptr<const BatchRouting> routing);
  /// Stores adapter `id` (grows the bank as needed). a (rank, in), b (out, rank).
  void set(int32_t id, int64_t rank, float scaling, const float* a, const float* b);
  /// y + per sequence s_j · (x_seq A_jᵀ) B_jᵀ for the adapter j named by the routing.
  /// x (B, T, in) or (B, in); y (..., out). Throws under gradient recording.
  Tensor apply(const Tensor& x, const Tensor& y) const;

  int64_t max_rank() const { return max_rank_; }
  int64_t rank(int32_t id) const {
    return id >= 0 && size_t(id) < rank_.size() ? rank_[size_t(id)] : 0;
  }

 private:
  int64_t in_, out_, max_rank_;
  std::shared_ptr<const BatchRouting> routing_;
  std::vector<int64_t> rank_;  // 0 = this layer has no weights for that adapter
  std::vector<float> scaling_;
  std::vector<float> a_, b_;  // (n, max_rank, in) and (n, out, max_rank)
};

}  // namespace bl
