// Fixed sinusoidal absolute encoding, added to the embeddings. Two forms:
// - default, MLX's SinusoidalPositionalEncoding as lmxlab uses it
//   (full_turns): with h = d/2 frequencies f_i = 2 pi * 1e-4^(i / (h - 1))
//   (2 pi down to 2 pi * 1e-4), pe[p, i] = s sin(p f_i), pe[p, h + i] =
//   s cos(p f_i), s = sqrt(2 / d) (row RMS 1/sqrt(d), the scale of embeddings
//   initialised near std 0.02-0.05);
// - sinusoidal_vaswani: Vaswani et al., pe[p, 2i] = sin(p / 10000^(2i/d)),
//   pe[p, 2i+1] = cos(same angle), unit amplitude.
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
