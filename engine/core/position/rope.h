// Rotary position embedding (Su et al.) on q and k, rotate-half layout, base rope_theta.
#pragma once

#include "core/components.h"

namespace bl {

class RoPE : public PositionEncoding {
 public:
  explicit RoPE(const BlockConfig& c);
  Tensor rotate(const Tensor& qk, int64_t n_heads, int64_t offset) override;

 private:
  float theta_;
  int64_t rot_dim_;  // 0 = whole head
};

}  // namespace bl
