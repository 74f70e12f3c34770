// Named model + training presets stored as JSON in <resources>/presets/.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "train/train_config.h"

namespace bl {

/// A preset file: {"description": "...", "model": {...}, "train": {...}}.
struct Preset {
  ModelConfig model;
  TrainConfig train;
  std::string description;  // optional one-liner for `models list` and the GUI

  bool operator==(const Preset&) const = default;
};

/// The resource directory: $BLOCKLAB_RESOURCES if set, else the build-time
/// BLOCKLAB_RESOURCE_DIR (the source tree's resources/).
std::string resource_dir();
/// Sorted preset names (the *.json files in <resources>/presets).
std::vector<std::string> preset_names();
/// Loads and validates a preset by name; ConfigError listing known names if unknown.
Preset load_preset(const std::string& name);
/// Loads and validates a preset file; errors name the file and the field path
/// (e.g. "x.json: model.block.d_model (250) must be divisible by ...").
Preset load_preset_file(const std::string& path);
/// Parses a preset object (no rule checks); ConfigError on unknown keys / wrong types.
Preset preset_from_json(const nlohmann::json& j);
/// Serialises a preset (keys in declaration order).
nlohmann::ordered_json preset_to_json(const Preset& p);
/// Writes a preset file (e.g. to save a GUI-built architecture as a new preset).
void save_preset_file(const std::string& path, const Preset& p);
/// Published model shapes (<resources>/architectures/*.json, same format as a
/// preset): for counting parameters and FLOPs, too large to train here.
std::vector<std::string> architecture_names();
Preset load_architecture(const std::string& name);

/// Every rule violated by the preset's model, train config and their combination.
std::vector<std::string> validation_errors(const Preset& p);

}  // namespace bl
