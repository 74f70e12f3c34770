// One transformer block assembled from registry components:
//   pre-norm:  h = x + drop(attn(norm1(x)));  y = h + drop(ffn(norm2(h)))
//   post-norm: h = norm1(x + drop(attn(x)));  y = norm2(h + drop(ffn(h)))
// Attention "none" / ffn "none" drop their whole sublayer (h = x / y = h).
#pragma once

#include <memory>

#include "core/components.h"
#include "core/config.h"
#include "tensor/rng.h"

namespace bl {

class Block : public Module {
 public:
  explicit Block(const BlockConfig& c);
  /// x (B, T, d_model). state: decoding state of this layer's attention, or null.
  Tensor forward(const Tensor& x, LayerState* state, bool training, Rng& rng);

  Attention& attention() { return *attention_; }
  FeedForward* ffn() { return ffn_; }
  const BlockConfig& config() const { return config_; }
  /// Tells the components which layer they are (for per-layer metric names).
  void set_layer_index(int64_t i) {
    if (ffn_) ffn_->set_layer_index(i);
  }

 private:
  BlockConfig config_;
  Norm* attn_norm_ = nullptr;  // null for attention "none" (sublayer skipped)
  Attention* attention_;
  Norm* ffn_norm_ = nullptr;
  FeedForward* ffn_ = nullptr;  // null for ffn "none"
  PositionEncoding*
      position_;  // relative encodings only (rope, alibi); absolute ones live in the model
};

}  // namespace bl
