// Standard FFN: down(GELU(up(x))), GELU exact (erf).
#pragma once

#include "core/components.h"
#include "core/linear.h"

namespace bl {

class StandardFFN : public FeedForward {
 public:
  explicit StandardFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;
  Tensor forward_add(const Tensor& x, const Tensor& residual) override;

 private:
  Linear* up_;    // (d_ff, d_model)
  Linear* down_;  // (d_model, d_ff), residual init
};

}  // namespace bl
