#include "inspect/heatmap_data.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>

namespace bl {

namespace {

// Natural order: digit runs compare as numbers ("layers.2" < "layers.10");
// for rows, names with a number sort before those without (layers before
// embed_tokens).
bool natural_less(const std::string& a, const std::string& b, bool numbered_first = true) {
  const bool da = std::any_of(a.begin(), a.end(), ::isdigit);
  const bool db = std::any_of(b.begin(), b.end(), ::isdigit);
  if (numbered_first && da != db) return da;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit((unsigned char)a[i]) && std::isdigit((unsigned char)b[j])) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && std::isdigit((unsigned char)a[i2])) ++i2;
      while (j2 < b.size() && std::isdigit((unsigned char)b[j2])) ++j2;
      const std::string na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

bool is_moe_family(const std::string& family) {
  return family.rfind("moe_load/", 0) == 0;
}

std::vector<HeatmapFamily> heatmap_families(const std::vector<std::string>& names) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> fam;  // row, metric
  for (const std::string& n : names) {
    // The family is everything before the last '/', the row what follows; a
    // family needs a prefix below its root ("diag/x/row", "moe_load/layer0/expert1").
    const size_t last = n.rfind('/');
    if (last == std::string::npos || last + 1 >= n.size()) continue;
    const std::string family = n.substr(0, last);
    const bool diag = family.rfind("diag/", 0) == 0 && family.size() > 5;
    const bool moe = is_moe_family(family) && family.size() > 9;
    if (!diag && !moe) continue;
    fam[family].emplace_back(n.substr(last + 1), n);
  }
  std::vector<HeatmapFamily> out;
  for (auto& [name, rows] : fam) {
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
    HeatmapFamily f;
    f.name = name;
    for (auto& [row, metric] : rows) {
      f.rows.push_back(row);
      f.metrics.push_back(metric);
    }
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](const HeatmapFamily& a, const HeatmapFamily& b) {
    return natural_less(a.name, b.name, false);
  });
  return out;
}

HeatmapGrid make_grid(const std::vector<std::string>& rows,
                      const std::vector<MetricSeries>& series) {
  HeatmapGrid g;
  g.rows = rows;
  for (const MetricSeries& s : series)
    g.steps.insert(g.steps.end(), s.steps.begin(), s.steps.end());
  std::sort(g.steps.begin(), g.steps.end());
  g.steps.erase(std::unique(g.steps.begin(), g.steps.end()), g.steps.end());
  const size_t cols = g.steps.size();
  g.values.assign(rows.size() * cols, std::numeric_limits<double>::quiet_NaN());
  bool any = false;
  for (size_t r = 0; r < rows.size() && r < series.size(); ++r) {
    const MetricSeries& s = series[r];
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t c =
          size_t(std::lower_bound(g.steps.begin(), g.steps.end(), s.steps[i]) - g.steps.begin());
      const double v = s.values[i];
      g.values[r * cols + c] = v;
      if (!std::isfinite(v)) continue;
      g.min = any ? std::min(g.min, v) : v;
      g.max = any ? std::max(g.max, v) : v;
      any = true;
    }
  }
  return g;
}

std::vector<int> flag_experts(const HeatmapGrid& g, size_t window) {
  const size_t cols = g.steps.size(), from = cols > window ? cols - window : 0;
  std::vector<double> mean(g.rows.size(), 0.0);
  double all = 0;
  size_t rows_with = 0;
  for (size_t r = 0; r < g.rows.size(); ++r) {
    double s = 0;
    size_t n = 0;
    for (size_t c = from; c < cols; ++c)
      if (std::isfinite(g.at(r, c))) {
        s += g.at(r, c);
        ++n;
      }
    mean[r] = n ? s / double(n) : std::numeric_limits<double>::quiet_NaN();
    if (n) {
      all += mean[r];
      ++rows_with;
    }
  }
  std::vector<int> flags(g.rows.size(), 0);
  if (!rows_with) return flags;
  const double avg = all / double(rows_with);
  for (size_t r = 0; r < g.rows.size(); ++r) {
    if (!std::isfinite(mean[r])) continue;
    if (mean[r] < 0.1 * avg) flags[r] = -1;
    if (mean[r] > 2.0 * avg) flags[r] = 1;
  }
  return flags;
}

}  // namespace bl
