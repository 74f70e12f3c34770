// Parameters' gradients (or values) packed into one contiguous float buffer,
// so a data-parallel step sums all gradients over ranks with a single
// collective instead of one per tensor (per-call latency dominates small
// tensors), and rank 0's initial weights reach every rank with one broadcast.
// Gradients stay in the parameters' own buffers, where the ops accumulate
// them; gather() / scatter() copy them in and out (two memcpy passes over
// the gradients, 3.3 MB for gpt-tiny; included in the per-step
// "allreduce_ms" metric, not timed on their own).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/parameter.h"

namespace bl {

class FlatBuffer {
 public:
  enum class Field { kGrad, kValue };
  /// Distinct parameters of `params` in order (a tied weight listed twice
  /// counts once); for kGrad only those with a gradient (trainable).
  FlatBuffer(const std::vector<Parameter*>& params, Field field);

  float* data() { return flat_.data(); }
  int64_t size() const { return flat_.size(); }
  /// Parameters -> buffer, each at its offset, in the order given.
  void gather();
  /// Buffer -> parameters.
  void scatter();

 private:
  float* field_of(Parameter* p) const;
  Field field_;
  std::vector<Parameter*> params_;
  std::vector<int64_t> offsets_;
  Buffer flat_;
};

}  // namespace bl
