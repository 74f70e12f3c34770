#include "browser/run_groups.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "browser/config_diff.h"

namespace bl {

namespace {

/// Fields that vary between replicates of one experiment without changing it.
bool ignored_for_grouping(const std::string& path) {
  static const std::set<std::string> kIgnored = {"train.seed", "train.threads",
                                                 "train.log_interval", "train.checkpoint_interval"};
  return kIgnored.count(path) > 0;
}

/// The config fields that define a group ("config except seed"), by path.
std::map<std::string, std::string> grouping_fields(const RunRecord& r) {
  std::map<std::string, std::string> out;
  for (auto& [path, v] : flatten_json(comparable_config(r)))
    if (!ignored_for_grouping(path)) out[path] = v;
  return out;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string last_component(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

/// Labels of config-except-seed groups: the fields whose values differ
/// between the groups, short names unless two would read alike.
void label_config_groups(std::vector<RunGroup>& groups,
                         const std::vector<std::map<std::string, std::string>>& fields) {
  std::vector<std::string> differing;
  std::set<std::string> seen;
  for (const auto& f : fields)
    for (const auto& [path, v] : f) {
      if (seen.count(path)) continue;
      for (const auto& other : fields) {
        const auto it = other.find(path);
        if (it == other.end() || it->second != v) {
          differing.push_back(path);
          seen.insert(path);
          break;
        }
      }
    }
  std::map<std::string, int> short_uses;
  for (const std::string& p : differing) ++short_uses[last_component(p)];
  for (size_t g = 0; g < groups.size(); ++g) {
    std::vector<std::string> parts;
    for (const std::string& p : differing) {
      const auto it = fields[g].find(p);
      const std::string name = short_uses[last_component(p)] > 1 ? p : last_component(p);
      parts.push_back(name + "=" + (it == fields[g].end() ? "—" : it->second));
    }
    groups[g].label = parts.empty() ? "same config" : join(parts, ", ");
  }
}

}  // namespace

nlohmann::json comparable_config(const RunRecord& r) {
  return {{"preset", r.preset},
          {"dataset", r.dataset_path},
          {"model", r.model_config},
          {"train", r.train_config}};
}

std::string strip_run_number(const std::string& name) {
  static const std::regex kSeed(R"(^(.*?)[\s_.\-]*seed[\s_=\-]*\d+$)", std::regex::icase);
  static const std::regex kShortSeed(R"(^(.*\S)[\s_.\-]+s\d+$)");
  static const std::regex kNumber(R"(^(.*\S)([\s_]+|-)\d+$)");
  std::smatch m;
  if (std::regex_match(name, m, kSeed) && m[1].length() > 0) return m[1];
  if (std::regex_match(name, m, kShortSeed)) return m[1];
  if (std::regex_match(name, m, kNumber)) {
    const std::string head = m[1];
    // "3e-3": the number is an exponent, not a run number.
    const bool exponent = m[2] == "-" && head.size() >= 2 &&
                          (head.back() == 'e' || head.back() == 'E') &&
                          std::isdigit(static_cast<unsigned char>(head[head.size() - 2]));
    if (!exponent) return head;
  }
  return name;
}

std::string group_key(const RunRecord& r, const GroupSpec& spec) {
  switch (spec.by) {
    case GroupSpec::By::kNone:
      return "#" + std::to_string(r.id);
    case GroupSpec::By::kConfigExceptSeed: {
      std::string key;
      for (const auto& [path, v] : grouping_fields(r)) key += path + "=" + v + "\n";
      return key;
    }
    case GroupSpec::By::kConfigField: {
      for (auto& [path, v] : flatten_json(comparable_config(r)))
        if (path == spec.field) return v;
      return "—";
    }
    case GroupSpec::By::kTags:
      return r.tags.empty() ? "(no tags)" : join(r.tags, ", ");
    case GroupSpec::By::kName: {
      if (spec.pattern.empty()) return strip_run_number(r.name);
      const std::regex re(spec.pattern);
      std::smatch m;
      if (!std::regex_search(r.name, m, re)) return r.name;  // unmatched: a group of its own
      return m.size() > 1 && m[1].matched ? m[1].str() : m[0].str();
    }
  }
  return {};
}

std::vector<RunGroup> group_runs(const std::vector<RunRecord>& runs, const GroupSpec& spec) {
  std::vector<const RunRecord*> sorted;
  for (const RunRecord& r : runs) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(),
            [](const RunRecord* a, const RunRecord* b) { return a->id < b->id; });
  std::vector<RunGroup> groups;
  std::vector<std::map<std::string, std::string>> fields;  // kConfigExceptSeed: per group
  std::map<std::string, size_t> index;
  for (const RunRecord* r : sorted) {
    const std::string key = group_key(*r, spec);
    auto [it, fresh] = index.emplace(key, groups.size());
    if (fresh) {
      RunGroup g;
      g.key = key;
      switch (spec.by) {
        case GroupSpec::By::kNone:
          g.label = "#" + std::to_string(r->id) + " " + r->name;
          break;
        case GroupSpec::By::kConfigField:
          g.label = last_component(spec.field) + "=" + key;
          break;
        default:
          g.label = key;
      }
      groups.push_back(std::move(g));
      if (spec.by == GroupSpec::By::kConfigExceptSeed) fields.push_back(grouping_fields(*r));
    }
    groups[it->second].run_ids.push_back(r->id);
  }
  if (spec.by == GroupSpec::By::kConfigExceptSeed) label_config_groups(groups, fields);
  return groups;
}

Stats stats_of(const std::vector<double>& values) {
  Stats s;
  double sum = 0;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    if (s.n == 0) s.min = s.max = v;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
    sum += v;
    ++s.n;
  }
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  if (s.n > 1) {
    double ss = 0;  // two passes: exact for the small groups seen here
    for (double v : values)
      if (std::isfinite(v)) ss += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(ss / (s.n - 1));
  }
  return s;
}

GroupCurve aggregate_curves(const std::vector<std::vector<CurvePoint>>& curves) {
  GroupCurve out;
  std::vector<size_t> at(curves.size(), 0);  // per curve: its next unread point
  std::vector<double> ys, xs;
  ys.reserve(curves.size());
  xs.reserve(curves.size());
  while (true) {
    // The next step: the smallest unread one of any curve.
    int64_t step = INT64_MAX;
    for (size_t c = 0; c < curves.size(); ++c)
      if (at[c] < curves[c].size()) step = std::min(step, curves[c][at[c]].step);
    if (step == INT64_MAX) break;
    ys.clear();
    xs.clear();
    for (size_t c = 0; c < curves.size(); ++c) {
      const std::vector<CurvePoint>& cv = curves[c];
      if (at[c] >= cv.size() || cv[at[c]].step != step) continue;
      while (at[c] + 1 < cv.size() && cv[at[c] + 1].step == step) ++at[c];  // a repeated step
      const CurvePoint& p = cv[at[c]++];
      if (std::isfinite(p.y) && std::isfinite(p.x)) {
        ys.push_back(p.y);
        xs.push_back(p.x);
      }
    }
    if (ys.empty()) continue;
    const Stats s = stats_of(ys);
    double x = 0;
    for (double v : xs) x += v;
    out.step.push_back(step);
    out.x.push_back(x / double(xs.size()));
    out.mean.push_back(s.mean);
    out.std.push_back(s.std);
    out.min.push_back(s.min);
    out.max.push_back(s.max);
    out.n.push_back(s.n);
  }
  return out;
}

}  // namespace bl
