// ALiBi (Press et al.): a per-head linear distance penalty on attention scores,
// slope_h from the geometric sequence 2^(-8/n), with the paper's interleaving
// when n_heads is not a power of two.
#pragma once

#include <vector>

#include "core/components.h"

namespace bl {

class ALiBi : public PositionEncoding {
 public:
  explicit ALiBi(const BlockConfig& c);
  const float* alibi_slopes() const override { return slopes_.data(); }
  static std::vector<float> slopes(int64_t n_heads);

 private:
  std::vector<float> slopes_;
};

}  // namespace bl
