#include "core/block.h"

#include "core/position/none.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"

namespace bl {

Block::Block(const BlockConfig& c) : config_(c) {
  // Attention "none" keeps its component (it owns the decoding state, which only
  // counts positions) but has no norm and is skipped in forward, like ffn "none".
  if (c.attention != "none")
    attn_norm_ = add_module("attn_norm", norm_registry().create(c.norm, c));
  attention_ = add_module("attention", attention_registry().create(c.attention, c));
  if (c.ffn != "none") {
    ffn_norm_ = add_module("ffn_norm", norm_registry().create(c.norm, c));
    ffn_ = add_module("ffn", ffn_registry().create(c.ffn, c));
  }
  std::unique_ptr<PositionEncoding> pos = position_registry().create(c.position, c);
  if (pos->is_absolute()) pos = std::make_unique<NoPosition>();  // applied once at the input
  position_ = add_module("position", std::move(pos));
}

Tensor Block::forward(const Tensor& x, LayerState* state, bool training, Rng& rng) {
  const float p = float(config_.dropout);
  Tensor h;
  if (!attn_norm_) {  // attention "none": no sublayer, the state still advances
    if (state) state->length += x.dim(1);
    if (!ffn_) return x;
    if (config_.pre_norm)
      return add(x, dropout(ffn_->forward(ffn_norm_->forward(x)), p, training, rng));
    return ffn_norm_->forward(add(x, dropout(ffn_->forward(x), p, training, rng)));
  }
  if (config_.pre_norm) {
    h = add(x, dropout(attention_->forward(attn_norm_->forward(x), *position_, state), p, training,
                       rng));
    if (!ffn_) return h;
    return add(h, dropout(ffn_->forward(ffn_norm_->forward(h)), p, training, rng));
  }
  h = attn_norm_->forward(
      add(x, dropout(attention_->forward(x, *position_, state), p, training, rng)));
  if (!ffn_) return h;
  return ffn_norm_->forward(add(h, dropout(ffn_->forward(h), p, training, rng)));
}

}  // namespace bl
