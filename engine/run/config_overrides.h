// Changes to a chosen config: "--set field=value" assignments and the train
// overrides of a RunSpec.
#pragma once

#include <string>
#include <vector>

#include "core/presets.h"
#include "run/run_spec.h"

namespace bl {

/// Applies "field=value" assignments with dotted paths into the preset's JSON
/// ("model.block.n_heads=4", "train.learning_rate=3e-4",
/// "model.block_configs.1.ffn=gated"); values are JSON (numbers, true, null,
/// "quoted") or else plain strings. Throws RunSpecError for malformed
/// assignments and ConfigError (with field paths) for unknown fields, wrong
/// types or broken rules.
Preset apply_set_overrides(const Preset& base, const std::vector<std::string>& assignments);

/// Sets the fields present in `o` (no validation).
void apply_train_overrides(const TrainOverrides& o, TrainConfig& t);

/// True if `o` sets a field other than max_steps, threads and eval_interval
/// (the ones a resume may change); `field` receives its name.
bool overrides_computation(const TrainOverrides& o, std::string* field = nullptr);

}  // namespace bl
