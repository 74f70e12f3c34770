// Fixed sinusoidal absolute encoding (Vaswani et al.), added to the embeddings:
// pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(same angle).
#pragma once

#include "core/components.h"

namespace bl {

class SinusoidalPosition : public PositionEncoding {
 public:
  explicit SinusoidalPosition(const BlockConfig& c);
  Tensor embed(const Tensor& x, int64_t offset) override;
  bool is_absolute() const override { return true; }

 private:
  int64_t max_len_, dim_;
  Buffer table_;  // (max_len, dim), not a parameter
};

}  // namespace bl
