#include "run/config_overrides.h"

#include <nlohmann/json.hpp>

#include "io/bounded_read.h"

namespace bl {

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  for (size_t b = 0;;) {
    const size_t e = path.find('.', b);
    parts.push_back(path.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) return parts;
    b = e + 1;
  }
}

/// The node `a` assigns to inside root (created for a new last key).
nlohmann::json& assigned_node(nlohmann::json& root, const std::string& a,
                              const std::vector<std::string>& parts) {
  const std::string path = a.substr(0, a.find('='));
  nlohmann::json* node = &root[parts[0]];
  std::string where = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p.empty()) throw RunSpecError("--set " + a + ": empty field name in '" + path + "'");
    const bool last = i + 1 == parts.size();
    if (node->is_object()) {
      if (!last && !node->contains(p))
        throw ConfigError("--set " + a + ": '" + where + "' has no field '" + p + "'");
      node = &(*node)[p];
    } else if (node->is_array()) {
      size_t used = 0, idx = 0;
      try {
        idx = std::stoul(p, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != p.size() || idx >= node->size())
        throw ConfigError("--set " + a + ": '" + where + "' is a list of " +
                          std::to_string(node->size()) + " entries; '" + p +
                          "' is not a valid index");
      node = &(*node)[idx];
    } else {
      throw ConfigError("--set " + a + ": '" + where + "' is a value, not a group of fields");
    }
    where += "." + p;
  }
  return *node;
}

}  // namespace

Preset apply_set_overrides(const Preset& base, const std::vector<std::string>& assignments) {
  if (assignments.empty()) return base;
  nlohmann::json root = {{"model", model_config_to_json(base.model)},
                         {"train", train_config_to_json(base.train)}};
  for (const std::string& a : assignments) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw RunSpecError("--set expects field=value (e.g. train.learning_rate=3e-4), got '" + a +
                         "'");
    const std::vector<std::string> parts = split_path(a.substr(0, eq));
    if (parts.size() < 2 || (parts[0] != "model" && parts[0] != "train"))
      throw RunSpecError("--set " + a +
                         ": the field path must start with 'model.' or 'train.' (e.g. "
                         "model.block.n_heads=4)");
    nlohmann::json& node = assigned_node(root, a, parts);
    const std::string text = a.substr(eq + 1);
    if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
      throw ConfigError("--set " + a + ": the value nests JSON deeper than " +
                        std::to_string(kMaxJsonDepth) + " levels");
    nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) value = text;  // bare words are strings: train.optimizer=lion
    node = value;
  }
  Preset p = preset_from_json(root);  // unknown keys / wrong types, with field paths
  p.description = base.description;
  std::vector<std::string> errors = validation_errors(p);
  if (!errors.empty()) throw ConfigError(errors);
  return p;
}

void apply_train_overrides(const TrainOverrides& o, TrainConfig& t) {
  if (o.max_steps) t.max_steps = *o.max_steps;
  if (o.seed) t.seed = *o.seed;
  if (o.learning_rate) t.learning_rate = *o.learning_rate;
  if (o.batch_size) t.batch_size = *o.batch_size;
  if (o.seq_len) t.seq_len = *o.seq_len;
  if (o.threads) t.threads = *o.threads;
  if (o.eval_interval) t.eval_interval = *o.eval_interval;
  if (o.warmup_steps) t.warmup_steps = *o.warmup_steps;
  if (o.optimizer) t.optimizer = *o.optimizer;
  if (o.lr_schedule) t.lr_schedule = *o.lr_schedule;
  if (o.flop_budget) t.flop_budget = *o.flop_budget;
  if (o.time_budget_s) t.time_budget_s = *o.time_budget_s;
}

bool overrides_computation(const TrainOverrides& o, std::string* field) {
  const std::pair<bool, const char*> fixed[] = {{bool(o.seed), "seed"},
                                                {bool(o.learning_rate), "learning_rate"},
                                                {bool(o.batch_size), "batch_size"},
                                                {bool(o.seq_len), "seq_len"},
                                                {bool(o.warmup_steps), "warmup_steps"},
                                                {bool(o.optimizer), "optimizer"},
                                                {bool(o.lr_schedule), "lr_schedule"},
                                                {bool(o.flop_budget), "flop_budget"}};
  for (const auto& [set, name] : fixed)
    if (set) {
      if (field) *field = name;
      return true;
    }
  return false;
}

}  // namespace bl
