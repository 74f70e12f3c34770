// The order a run visits a fixed set of examples (DPO pairs, GRPO prompts):
// a fresh shuffle each epoch, a function of (run seed, epoch) alone, so a
// resumed run draws what the uninterrupted one would.
#pragma once

#include <cstdint>
#include <vector>

namespace bl {

/// Fills `order` (its size = the example count) with epoch `epoch`'s
/// permutation: Fisher-Yates from an Rng seeded by (seed, epoch). No allocation.
void epoch_order(std::vector<int64_t>& order, uint64_t seed, int64_t epoch);

}  // namespace bl
