#include "core/position/learned.h"

#include "core/config.h"
#include "ops/check.h"
#include "ops/elementwise.h"
#include "tensor/graph.h"

namespace bl {

LearnedPosition::LearnedPosition(const BlockConfig& c) : max_len_(c.max_seq_len), dim_(c.d_model) {
  weight_ = add_parameter("weight", Shape{max_len_, dim_}, Init::kNormal);
}

Tensor LearnedPosition::embed(const Tensor& x, int64_t offset) {
  const int64_t T = x.dim(-2);
  op_check(offset + T <= max_len_, "learned",
           "position " + std::to_string(offset + T - 1) + " beyond max_seq_len " +
               std::to_string(max_len_));
  // A view of rows [offset, offset + T) whose gradient lands in the parameter's.
  // (The handle's gradient: a data-parallel replica's own buffer.)
  float* g = weight_->tensor().impl()->grad;
  float* grad = weight_->trainable() && g ? g + offset * dim_ : nullptr;
  Tensor rows = current_graph().wrap(weight_->data() + offset * dim_, Shape{T, dim_}, grad,
                                     weight_->trainable());
  return add(x, rows);
}

}  // namespace bl
