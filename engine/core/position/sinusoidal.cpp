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
  if (c.sinusoidal_vaswani) {
    for (int64_t p = 0; p < max_len_; ++p)
      for (int64_t i = 0; i < dim_; i += 2) {
        double angle = double(p) / std::pow(10000.0, double(i) / double(dim_));
        t[p * dim_ + i] = float(std::sin(angle));
        if (i + 1 < dim_) t[p * dim_ + i + 1] = float(std::cos(angle));
      }
    return;
  }
  const int64_t half = dim_ / 2;  // an odd width leaves its last column 0
  const double scale = std::sqrt(2.0 / double(dim_));
  for (int64_t i = 0; i < half; ++i) {
    const double frac = half > 1 ? double(i) / double(half - 1) : 0.0;
    const double freq = 2.0 * M_PI * std::exp(frac * std::log(1e-4));
    for (int64_t p = 0; p < max_len_; ++p) {
      t[p * dim_ + i] = float(scale * std::sin(double(p) * freq));
      t[p * dim_ + half + i] = float(scale * std::cos(double(p) * freq));
    }
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
