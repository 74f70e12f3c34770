// The reference side of preference optimization: how likely a frozen model
// finds each pair's completions, computed once before a DPO run trains.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"
#include "data/preference_data.h"

namespace bl {

/// Summed log-probability of each pair's chosen and rejected completion given
/// its prompt, as packed by pack_preference_batch for seq_len: 2 values per
/// pair, (chosen, rejected), in pair order. Runs without a gradient, batch_pairs
/// pairs at a time.
std::vector<float> reference_logps(LanguageModel& model, const std::vector<PreferencePair>& pairs,
                                   int64_t seq_len, int64_t batch_pairs);

}  // namespace bl
