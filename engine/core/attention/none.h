// No attention: the block has no token-mixing sublayer (FFN-only layers of
// hybrid stacks, Nemotron-H '-' and 'E'). Block skips the sublayer entirely
// (no norm, no residual add); on its own this contributes zeros.
#pragma once

#include "core/components.h"

namespace bl {

class NoAttention : public Attention {
 public:
  explicit NoAttention(const BlockConfig& c);
  /// Zeros (B, T, d_model); advances the state's length.
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  /// A bare LayerState: only the position counter.
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  double mixing_flops_per_token(int64_t) const override { return 0.0; }
};

}  // namespace bl
