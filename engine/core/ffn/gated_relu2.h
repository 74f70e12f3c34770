// Gated squared-ReLU FFN: down(relu(gate(x))^2 * up(x)) (the ReGLU family with
// Primer's squared activation): the gated FFN with another gate activation.
#pragma once

#include "core/ffn/gated.h"
#include "ops/activation.h"

namespace bl {

class GatedReLU2FFN : public GatedFFN {
 public:
  explicit GatedReLU2FFN(const BlockConfig& c) : GatedFFN(c, relu2_glu) {}
};

}  // namespace bl
