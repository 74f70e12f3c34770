#include "browser/config_diff.h"

#include <map>

namespace bl {

namespace {
void flatten(const nlohmann::json& j, const std::string& path,
             std::vector<std::pair<std::string, std::string>>& out) {
  auto child = [&](const std::string& k) { return path.empty() ? k : path + "." + k; };
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) flatten(it.value(), child(it.key()), out);
  } else if (j.is_array() && !j.empty()) {
    for (size_t i = 0; i < j.size(); ++i) flatten(j[i], child(std::to_string(i)), out);
  } else {
    out.emplace_back(path, j.is_string() ? j.get<std::string>() : j.dump());
  }
}
}  // namespace

std::vector<std::pair<std::string, std::string>> flatten_json(const nlohmann::json& j) {
  std::vector<std::pair<std::string, std::string>> out;
  flatten(j, "", out);
  return out;
}

std::vector<DiffRow> config_diff(const std::vector<nlohmann::json>& configs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> values;
  const std::string absent = "—";
  for (size_t c = 0; c < configs.size(); ++c)
    for (auto& [path, v] : flatten_json(configs[c])) {
      auto [it, fresh] = values.try_emplace(path, configs.size(), absent);
      if (fresh) order.push_back(path);
      it->second[c] = v;
    }
  std::vector<DiffRow> rows;
  for (const std::string& f : order) {
    const std::vector<std::string>& v = values[f];
    for (const std::string& x : v)
      if (x != v.front()) {
        rows.push_back({f, v});
        break;
      }
  }
  return rows;
}

}  // namespace bl
