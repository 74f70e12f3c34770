// Will a run fit in this machine's memory? Estimated from the config alone
// (the composer's architecture analysis: weights, activations) plus gradients
// and optimizer state, before any data is read or tensor allocated: a model
// that cannot fit is refused with its numbers instead of ending in bad_alloc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "train/train_config.h"

namespace bl {

struct MemoryEstimate {
  double weight_bytes = 0;      // fp32 weights
  double gradient_bytes = 0;    // one fp32 gradient per trainable weight
  double optimizer_bytes = 0;   // optimizer state of the trainable weights
  double activation_bytes = 0;  // kept for backward, one step's batch
  double total() const {
    return weight_bytes + gradient_bytes + optimizer_bytes + activation_bytes;
  }
};

/// Training memory of `m` with `t`. `trainable` < 0 means all weights train.
/// `m` must be valid (validation_errors empty).
MemoryEstimate estimate_training_memory(const ModelConfig& m, const TrainConfig& t,
                                        int64_t trainable = -1);

/// Physical memory of this machine in bytes (MemTotal of /proc/meminfo, else
/// sysconf); $BLOCKLAB_MEMORY_LIMIT_MB overrides it (tests, shared hosts).
int64_t machine_memory_bytes();

/// Empty when `e` fits in `available` bytes, else one message with the numbers.
std::vector<std::string> memory_errors(const MemoryEstimate& e, int64_t available);

}  // namespace bl
