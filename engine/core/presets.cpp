#include "core/presets.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace bl {

namespace fs = std::filesystem;

namespace {

void read_preset(const nlohmann::json& j, Preset& p, std::vector<std::string>& errors) {
  JsonObjectReader r(j, "", errors);
  r.get("description", p.description);
  if (const nlohmann::json* m = r.raw("model")) read_model_config(*m, "model", p.model, errors);
  if (const nlohmann::json* t = r.raw("train")) read_train_config(*t, "train", p.train, errors);
  // A flat file (like perf/configs/*.json) mixes model, block and train keys.
  for (auto& f : block_config_field_names()) r.hint(f, "model.block." + f);
  for (auto& f : model_config_field_names()) r.hint(f, "model." + f);
  for (auto& f : train_config_field_names()) r.hint(f, "train." + f);
  add_train_key_hints(r, "train.");
  r.finish();
}

}  // namespace

std::string resource_dir() {
  if (const char* env = std::getenv("BLOCKLAB_RESOURCES"); env && *env) return env;
  return BLOCKLAB_RESOURCE_DIR;
}

namespace {
std::vector<std::string> json_names(const char* folder) {
  std::vector<std::string> names;
  fs::path dir = fs::path(resource_dir()) / folder;
  std::error_code ec;
  for (auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file() && entry.path().extension() == ".json")
      names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

Preset load_named(const char* folder, const char* kind, const std::string& name) {
  auto names = json_names(folder);
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string msg = std::string("unknown ") + kind + " '" + name + "'; known: ";
    for (size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : "") + names[i];
    if (names.empty())
      msg += "(none found in " + (fs::path(resource_dir()) / folder).string() + ")";
    throw ConfigError(msg);
  }
  return load_preset_file((fs::path(resource_dir()) / folder / (name + ".json")).string());
}
}  // namespace

std::vector<std::string> preset_names() {
  return json_names("presets");
}
Preset load_preset(const std::string& name) {
  return load_named("presets", "preset", name);
}
std::vector<std::string> architecture_names() {
  return json_names("architectures");
}
Preset load_architecture(const std::string& name) {
  return load_named("architectures", "architecture", name);
}

Preset preset_from_json(const nlohmann::json& j) {
  Preset p;
  std::vector<std::string> errors;
  read_preset(j, p, errors);
  if (!errors.empty()) throw ConfigError(errors);
  return p;
}

nlohmann::ordered_json preset_to_json(const Preset& p) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!p.description.empty()) j["description"] = p.description;
  j["model"] = model_config_to_ordered_json(p.model);
  j["train"] = train_config_to_ordered_json(p.train);
  return j;
}

void save_preset_file(const std::string& path, const Preset& p) {
  write_json_file(path, preset_to_json(p));
}

std::vector<std::string> validation_errors(const Preset& p) {
  std::vector<std::string> errors;
  for (auto& e : validation_errors(p.model, "model")) errors.push_back(e);
  for (auto& e : validation_errors(p.train, "train")) errors.push_back(e);
  for (auto& e : compatibility_errors(p.model, p.train)) errors.push_back(e);
  return errors;
}

Preset load_preset_file(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  Preset p;
  std::vector<std::string> errors;
  read_preset(j, p, errors);
  if (errors.empty()) errors = validation_errors(p);
  for (auto& e : errors) e = path + ": " + e;
  if (!errors.empty()) throw ConfigError(errors);
  return p;
}

}  // namespace bl
