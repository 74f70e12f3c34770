#include "core/mtp_head.h"

#include "core/config.h"
#include "ops/shape_ops.h"

namespace bl {

MTPHead::MTPHead(const BlockConfig& c) {
  h_norm_ = add_module("hidden_norm", norm_registry().create(c.norm, c));
  embed_norm_ = add_module("embed_norm", norm_registry().create(c.norm, c));
  proj_ = add_module("proj", std::make_unique<Linear>(2 * c.d_model, c.d_model, false));
  block_ = add_module("block", std::make_unique<Block>(c));
}

Tensor MTPHead::forward(const Tensor& h, const Tensor& prev_embed, bool training, Rng& rng) {
  parts_[0] = h_norm_->forward(h);
  parts_[1] = embed_norm_->forward(prev_embed);
  Tensor joined = concat(parts_, 2);
  return block_->forward(proj_->forward(joined), nullptr, training, rng);
}

int64_t MTPHead::active_parameters() {
  int64_t n = num_parameters();
  if (FeedForward* f = block_->ffn()) n -= f->num_parameters() - f->active_parameters();
  return n;
}

}  // namespace bl
