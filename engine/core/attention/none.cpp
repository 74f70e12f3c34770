#include "core/attention/none.h"

#include "tensor/graph.h"

namespace bl {

NoAttention::NoAttention(const BlockConfig&) {}

Tensor NoAttention::forward(const Tensor& x, PositionEncoding&, LayerState* state) {
  if (state) state->length += x.dim(1);
  return current_graph().zeros(x.shape());
}

std::unique_ptr<LayerState> NoAttention::make_state(int64_t batch, int64_t) const {
  auto s = std::make_unique<LayerState>();
  s->batch = batch;
  return s;
}

}  // namespace bl
