// Multi-head attention: GQA with one key/value head per query head.
#pragma once

#include "core/attention/gqa.h"

namespace bl {

class MHA : public GQA {
 public:
  explicit MHA(const BlockConfig& c);
};

}  // namespace bl
