// Multi-token prediction head (DeepSeek V3, lmxlab's MTPHead): depth k sees the
// hidden state of depth k-1 and the embedding of token t+k, normalises both,
// projects their concatenation back to d_model and runs one transformer block.
// The model's final norm and LM head turn its output into logits for token
// t+k+1. Training only: generation uses the main model.
#pragma once

#include <vector>

#include "core/block.h"
#include "core/components.h"
#include "core/linear.h"

namespace bl {

class MTPHead : public Module {
 public:
  explicit MTPHead(const BlockConfig& c);
  /// h and prev_embed (B, T, d_model) -> (B, T, d_model).
  Tensor forward(const Tensor& h, const Tensor& prev_embed, bool training, Rng& rng);
  /// Weights used per token (a MoE block counts its active experts only).
  int64_t active_parameters();
  double attention_mixing_flops(int64_t seq_len) {
    return block_->attention().mixing_flops_per_token(seq_len);
  }

 private:
  Norm* h_norm_;
  Norm* embed_norm_;
  Linear* proj_;  // (2 d_model -> d_model)
  Block* block_;
  std::vector<Tensor> parts_ = std::vector<Tensor>(2);  // concat inputs, reused: no step allocates
};

}  // namespace bl
