// What the Heatmaps tab draws, without widgets: metric names grouped into
// families of rows (per-layer diagnostics, per-expert MoE load), the rows'
// series aligned on a step grid, and MoE experts flagged dead or overloaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/experiment_store.h"

namespace bl {

struct HeatmapFamily {
  std::string name;                  // "diag/grad_norm", "moe_load/layer1"
  std::vector<std::string> metrics;  // one per row
  std::vector<std::string> rows;     // row labels: "layers.0", "expert3"
};

/// "diag/<what>/<group>" -> family "diag/<what>", a row per group;
/// "moe_load/layer<L>/expert<E>" -> family "moe_load/layer<L>", a row per
/// expert. Rows in natural order (layers.2 before layers.10, numbered groups
/// before the others); families by name. diag/time_ms and other names without
/// a row part are not families.
std::vector<HeatmapFamily> heatmap_families(const std::vector<std::string>& metric_names);

struct HeatmapGrid {
  std::vector<std::string> rows;
  std::vector<int64_t> steps;  // the union of the rows' steps, ascending
  std::vector<double> values;  // rows x steps, row-major; NaN where a row has no value
  double min = 0, max = 0;     // over the finite values (0, 0 if none)
  double at(size_t row, size_t col) const { return values[row * steps.size() + col]; }
};

/// Aligns the rows' series (one per row, same order) on the union of their steps.
HeatmapGrid make_grid(const std::vector<std::string>& rows,
                      const std::vector<MetricSeries>& series);

/// For an MoE load family: each row's mean over the last `window` steps,
/// against the mean over rows: -1 (dead) below a tenth of it, +1
/// (overloaded) above twice it, 0 otherwise.
std::vector<int> flag_experts(const HeatmapGrid& g, size_t window = 20);

/// Whether `family` is an MoE load family (its rows are experts).
bool is_moe_family(const std::string& family);

}  // namespace bl
