// No position information (NoPE): attention is permutation-aware only through the causal mask.
#pragma once

#include "core/components.h"

namespace bl {

class NoPosition : public PositionEncoding {
 public:
  explicit NoPosition(const BlockConfig&) {}
  NoPosition() = default;
};

}  // namespace bl
