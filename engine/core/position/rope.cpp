#include "core/position/rope.h"

#include "core/config.h"
#include "ops/rope.h"

namespace bl {

RoPE::RoPE(const BlockConfig& c) : theta_(float(c.rope_theta)), rot_dim_(0) {}

Tensor RoPE::rotate(const Tensor& qk, int64_t n_heads, int64_t offset) {
  return rope(qk, n_heads, theta_, offset, rot_dim_);
}

}  // namespace bl
