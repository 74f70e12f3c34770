#include "core/position/sinusoidal.h"

#include <cmath>

#include "core/config.h"
#include "ops/check.h"
#include "ops/elementwise.h"
#include "tensor/graph.h"

namespace bl {

SinusoidalPosition::SinusoidalPosition(const BlockConfig& c)
    : max_len_(c.max_seq_len), dim_(c.d_model), table_(c.max_seq_len * c.d_model) {
  float* t = table_.data();
  for (int64_t p = 0; p < max_len_; ++p)
    for (int64_t i = 0; i < dim_; i += 2) {
      double angle = double(p) / std::pow(10000.0, double(i) / double(dim_));
      t[p * dim_ + i] = float(std::sin(angle));
      if (i + 1 < dim_) t[p * dim_ + i + 1] = float(std::cos(angle));
    }
}

Tensor SinusoidalPosition::embed(const Tensor& x, int64_t offset) {
  const int64_t T = x.dim(-2);
  op_check(offset + T <= max_len_, "sinusoidal",
           "position " + std::to_string(offset + T - 1) + " beyond max_seq_len " +
               std::to_string(max_len_));
  Tensor pe = current_graph().wrap(table_.data() + offset * dim_, Shape{T, dim_});
  return add(x, pe);
}

}  // namespace bl
