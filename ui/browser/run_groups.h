// Run groups: which runs belong together (the same configuration with seeds
// 1-5, a tag, a name pattern) and the statistics across a group's runs: mean,
// standard deviation, min and max of curves aligned by step, and of scalars
// (best eval loss, final loss). Qt-free.
//
// Standard deviations are sample ones (divided by n - 1): a group's runs are a
// sample of the seeds one could have run. A group of one run has std 0.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store/experiment_store.h"

namespace bl {

struct GroupSpec {
  enum class By {
    kNone,
    kConfigExceptSeed,  // every config field but the seed (and bookkeeping: threads, log intervals)
    kConfigField,       // one config field, by dotted path (`field`)
    kTags,              // the run's tag set
    kName,              // the name with a trailing seed / number stripped, or `pattern`
  };
  By by = By::kNone;
  std::string field;    // kConfigField: "train.learning_rate"
  std::string pattern;  // kName: an ECMAScript regex; its first capture group (else the
                        // whole match) is the key. Empty: strip_run_number(name)
  bool operator==(const GroupSpec&) const = default;
};

struct RunGroup {
  std::string key;               // equal keys = one group
  std::string label;             // what the legend and the table show
  std::vector<int64_t> run_ids;  // ascending
};

/// The run's configuration as compared in the diff table and grouped here:
/// {"preset", "dataset", "model", "train"}.
nlohmann::json comparable_config(const RunRecord& r);

/// "gpt lr 3e-3 seed 2" -> "gpt lr 3e-3", "base-s3" -> "base", "run_07" -> "run",
/// "x-4" -> "x"; a number that is part of a value stays ("lr 3e-3").
std::string strip_run_number(const std::string& name);

/// The group key of one run. Throws std::regex_error on an invalid pattern.
std::string group_key(const RunRecord& r, const GroupSpec& spec);

/// Groups `runs` by `spec`, in order of each group's lowest run id; with
/// kNone every run is its own group. Labels: for kConfigExceptSeed the fields
/// that differ between the groups ("learning_rate=0.003, d_model=128"; "same
/// config" when none do), for kConfigField "field=value", else the key.
/// Throws std::regex_error on an invalid pattern.
std::vector<RunGroup> group_runs(const std::vector<RunRecord>& runs, const GroupSpec& spec);

/// Statistics of a set of numbers (non-finite ones ignored).
struct Stats {
  int n = 0;
  double mean = 0, std = 0, min = 0, max = 0;  // all 0 when n == 0
};
Stats stats_of(const std::vector<double>& values);

/// One point of a run's curve: x is what the chart's axis shows at `step`
/// (steps, tokens, seconds, FLOPs).
struct CurvePoint {
  int64_t step = 0;
  double x = 0, y = 0;
};

/// Curves of a group aligned by step: one entry per step at which at least
/// one run has a finite value, steps ascending. x is the mean x of the runs
/// there (the same for step and, with equal batches, tokens).
struct GroupCurve {
  std::vector<int64_t> step;
  std::vector<double> x, mean, std, min, max;
  std::vector<int> n;  // runs with a value at that step
  size_t size() const { return step.size(); }
};

/// Aggregates curves, each sorted by step (a repeated step counts once: its
/// last value). Runs of different lengths: past a run's end only the others count.
GroupCurve aggregate_curves(const std::vector<std::vector<CurvePoint>>& curves);

}  // namespace bl
