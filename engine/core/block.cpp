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
  // Without dropout on the sublayer's output, the residual add goes into the
  // sublayer's last product (forward_add) instead of a pass of its own.
  const bool fold = p == 0.0f || !training;
  auto mixed = [&](const Tensor& res, const Tensor& in) {
    if (fold) return attention_->forward_add(in, *position_, state, res);
    return add(res, dropout(attention_->forward(in, *position_, state), p, training, rng));
  };
  auto fed = [&](const Tensor& res, const Tensor& in) {
    if (fold) return ffn_->forward_add(in, res);
    return add(res, dropout(ffn_->forward(in), p, training, rng));
  };
  if (!attn_norm_) {  // attention "none": no sublayer, the state still advances
    if (state) state->length += x.dim(1);
    if (!ffn_) return x;
    if (config_.pre_norm) return fed(x, ffn_norm_->forward(x));
    return ffn_norm_->forward(fed(x, x));
  }
  if (config_.pre_norm) {
    const Tensor h = mixed(x, attn_norm_->forward(x));
    if (!ffn_) return h;
    return fed(h, ffn_norm_->forward(h));
  }
  const Tensor h = attn_norm_->forward(mixed(x, x));
  if (!ffn_) return h;
  return ffn_norm_->forward(fed(h, h));
}

}  // namespace bl
