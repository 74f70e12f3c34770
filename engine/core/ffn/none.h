// No FFN: the block has no channel-mixing sublayer (attention-only or
// mixer-only layers). Registered so the name validates and shows in the
// registry; Block never builds it and skips the sublayer (no norm, no
// residual add). On its own it contributes zeros.
#pragma once

#include "core/components.h"

namespace bl {

class NoFFN : public FeedForward {
 public:
  explicit NoFFN(const BlockConfig& c);
  Tensor forward(const Tensor& x) override;  // zeros of x's shape
};

}  // namespace bl
