#include "core/attention/sliding_window_gqa.h"

#include <stdexcept>

#include "core/config.h"

namespace bl {

namespace {
int64_t checked_window(const BlockConfig& c) {
  if (!c.window_size || *c.window_size < 1)
    throw std::invalid_argument("sliding_window_gqa needs window_size >= 1");
  return *c.window_size;
}
}  // namespace

SlidingWindowGQA::SlidingWindowGQA(const BlockConfig& c)
    : LocalGQA(c, c.effective_n_kv_heads()), window_(checked_window(c)) {}

AttentionOptions SlidingWindowGQA::options(PositionEncoding& pos) const {
  AttentionOptions o = GQA::options(pos);
  o.window = window_;
  return o;
}

}  // namespace bl
