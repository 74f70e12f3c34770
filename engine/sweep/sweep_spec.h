// A sweep: a base config (preset, config file or inline config), axes over
// any config field (grid values; uniform, log-uniform, int-uniform or choice
// draws), seeds and a run budget, parsed from SPEC.json and expanded into a
// deterministic, ordered list of trials. Trial i is the same on every machine
// and in every process (random draws come from the sweep seed through a fixed
// integer hash, not from <random>'s implementation-defined distributions), so
// a Slurm array task needs only its index, and a resumed sweep finds the same
// trials again. No Qt, no store.
//
// SPEC.json (every key but grid/random/seeds is optional; see README "Sweeps"):
//   {"name": "lr-grid",
//    "preset": "gpt-tiny" | "config": "file.json" | "config": {model, train},
//    "set": ["train.max_steps=200"], "data": "corpus.txt", "tokenizer": "char",
//    "grid":   {"train.learning_rate": [1e-3, 3e-4]},
//    "random": {"train.weight_decay": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1},
//               "train.optimizer": {"distribution": "choice", "values": ["adamw", "lion"]}},
//    "samples": 4, "seeds": [0, 1, 2] | 3, "budget": 20, "seed": 0}
// Order: grid points (axes in name order, the last varying fastest), then the
// random samples of each point, then seeds (innermost, so a budget that cuts
// the list keeps whole seed groups).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "run/run_spec.h"

namespace bl {

/// A spec that cannot be expanded; the message names the file, the field and
/// the rule ("sweep.json: random.train.lr.min: must be > 0 for log_uniform").
struct SweepSpecError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct RandomAxis {
  std::string field;
  std::string distribution;  // uniform | log_uniform | int_uniform | choice
  double min = 0, max = 0;   // the numeric distributions
  nlohmann::json values;     // choice
};

struct SweepSpec {
  std::string name;
  std::string preset;            // one of preset,
  std::string config_path;       // config file (absolute),
  nlohmann::json config_inline;  // or inline {"model", "train"} (null if not given)
  std::vector<std::string> set;  // base assignments, applied before each trial's
  std::string data_path;         // absolute; "" = the bundled corpus
  std::string tokenizer;
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> grid;  // sorted by field
  std::vector<RandomAxis> random;                                         // sorted by field
  int64_t samples = 1;            // random draws per grid point
  std::vector<int64_t> seeds;     // empty: the base config's seed
  std::optional<int64_t> budget;  // caps the trial count
  uint64_t seed = 0;              // the random axes' seed
  nlohmann::json source;          // the spec as written (paths resolved)

  /// Trials the axes and seeds give, before the budget.
  int64_t full_count() const;
  /// Trials run: full_count() capped by the budget.
  int64_t trial_count() const;
};

/// One configuration of a sweep.
struct SweepTrial {
  int64_t index = 0;
  std::vector<std::string> set;  // the axes' "field=value" assignments
  std::optional<int64_t> seed;   // train.seed, when the spec lists seeds
  nlohmann::json params;         // {field: value, ..., "seed": s}: what this trial varies
};

/// Parses and checks a spec (relative paths are taken from the spec file's
/// directory, `base_dir`). `what` names the spec in errors. Throws SweepSpecError.
SweepSpec parse_sweep_spec(const nlohmann::json& j, const std::string& what,
                           const std::string& base_dir);
/// Reads and parses SPEC.json (a regular file of at most 1 MiB).
SweepSpec load_sweep_spec(const std::string& path);

/// Trial `index` (0 <= index < trial_count()); std::out_of_range otherwise.
SweepTrial sweep_trial(const SweepSpec& spec, int64_t index);
/// Every trial, in order.
std::vector<SweepTrial> expand_sweep(const SweepSpec& spec);

/// The RunSpec of one trial: a fresh run of the base config with the spec's
/// and the trial's assignments, the trial's seed, recorded in `db_path` as
/// trial `trial.index` of sweep `sweep_id`.
RunSpec trial_run_spec(const SweepSpec& spec, const SweepTrial& trial, const std::string& db_path,
                       int64_t sweep_id);

/// Checks every trial's config (field names, types and rules, through the
/// same override code as --set) without reading data; throws SweepSpecError
/// naming the trial and its assignments.
void check_sweep_trials(const SweepSpec& spec);

}  // namespace bl
