// Which configuration fields differ between runs: configs are flattened to
// dotted paths ("train.learning_rate", "model.block.n_heads") and only the
// paths whose values are not all equal are kept. Qt-free.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bl {

struct DiffRow {
  std::string field;                // dotted path
  std::vector<std::string> values;  // one per config; "—" where the field is absent
};

/// Leaf values of `j` by dotted path (arrays by index), in document order.
std::vector<std::pair<std::string, std::string>> flatten_json(const nlohmann::json& j);

/// Rows for the fields whose values differ between `configs` (in first-seen order).
std::vector<DiffRow> config_diff(const std::vector<nlohmann::json>& configs);

}  // namespace bl
