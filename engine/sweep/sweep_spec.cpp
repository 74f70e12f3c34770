#include "sweep/sweep_spec.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "core/presets.h"
#include "io/bounded_read.h"
#include "run/config_overrides.h"

namespace bl {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// More trials than any sweep a researcher would run; keeps the products below
// (grid points x samples x seeds) far from int64 overflow.
constexpr int64_t kMaxTrials = 1'000'000;
// int_uniform bounds: integers a double holds exactly.
constexpr double kMaxIntDraw = 9007199254740992.0;  // 2^53

[[noreturn]] void fail(const std::string& what, const std::string& field, const std::string& rule) {
  throw SweepSpecError(what + ": " + field + ": " + rule);
}

[[noreturn]] void fail_too_many(const std::string& what) {
  fail(what, "grid",
       "the sweep expands to more than " + std::to_string(kMaxTrials) +
           " trials; narrow the axes or set a budget with fewer samples");
}

std::string type_name(const json& v) {
  return v.type_name();
}

int64_t get_count(const json& v, const std::string& what, const std::string& field, int64_t lo,
                  int64_t hi) {
  if (!v.is_number_integer())
    fail(what, field, "must be an integer, got " + type_name(v) + " " + v.dump());
  const int64_t n = v.get<int64_t>();
  if (n < lo || n > hi)
    fail(what, field,
         "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
             std::to_string(n));
  return n;
}

double get_number(const json& v, const std::string& what, const std::string& field) {
  if (!v.is_number()) fail(what, field, "must be a number, got " + type_name(v));
  const double x = v.get<double>();
  if (!std::isfinite(x)) fail(what, field, "must be finite");
  return x;
}

std::string get_string(const json& v, const std::string& what, const std::string& field) {
  if (!v.is_string()) fail(what, field, "must be a string, got " + type_name(v));
  return v.get<std::string>();
}

void check_field_path(const std::string& f, const std::string& what, const std::string& where) {
  if (f.rfind("model.", 0) != 0 && f.rfind("train.", 0) != 0)
    fail(what, where + "." + f,
         "an axis is a config field path starting with 'model.' or 'train.' (e.g. "
         "train.learning_rate)");
}

std::string absolute_from(const std::string& p, const std::string& base_dir) {
  if (p.empty()) return p;
  fs::path path(p);
  if (path.is_relative()) path = fs::path(base_dir) / path;
  return fs::absolute(path).lexically_normal().string();
}

RandomAxis parse_random_axis(const std::string& field, const json& a, const std::string& what) {
  const std::string where = "random." + field;
  if (!a.is_object())
    fail(what, where,
         "must be an object like {\"distribution\": \"uniform\", \"min\": 0, \"max\": 1}");
  RandomAxis ax;
  ax.field = field;
  if (!a.contains("distribution")) fail(what, where + ".distribution", "is required");
  ax.distribution = get_string(a["distribution"], what, where + ".distribution");
  static const std::set<std::string> known = {"uniform", "log_uniform", "int_uniform", "choice"};
  if (!known.count(ax.distribution))
    fail(what, where + ".distribution",
         "must be one of uniform, log_uniform, int_uniform, choice; got '" + ax.distribution + "'");
  std::set<std::string> allowed = {"distribution"};
  if (ax.distribution == "choice") {
    allowed.insert("values");
    if (!a.contains("values") || !a["values"].is_array() || a["values"].empty())
      fail(what, where + ".values", "must be a non-empty array for choice");
    ax.values = a["values"];
  } else {
    allowed.insert({"min", "max"});
    for (const char* k : {"min", "max"})
      if (!a.contains(k)) fail(what, where + "." + k, "is required for " + ax.distribution);
    ax.min = get_number(a["min"], what, where + ".min");
    ax.max = get_number(a["max"], what, where + ".max");
    if (!(ax.min <= ax.max))
      fail(what, where, "min (" + a["min"].dump() + ") must be <= max (" + a["max"].dump() + ")");
    if (ax.distribution == "log_uniform" && ax.min <= 0)
      fail(what, where + ".min", "must be > 0 for log_uniform");
    if (ax.distribution == "int_uniform") {
      if (!a["min"].is_number_integer() || !a["max"].is_number_integer())
        fail(what, where, "min and max must be integers for int_uniform");
      // Exact as doubles, and max - min + 1 fits in int64 (a wider range
      // overflowed the draw: min -5e18, max 5e18).
      for (const char* k : {"min", "max"})
        if (std::fabs(a[k].get<double>()) > kMaxIntDraw)
          fail(what, where + "." + k,
               "must be in [-2^53, 2^53] for int_uniform, got " + a[k].dump());
    }
  }
  for (auto& [k, v] : a.items())
    if (!allowed.count(k)) fail(what, where + "." + k, "unknown key for " + ax.distribution);
  return ax;
}

// SplitMix64 (Steele et al.): a fixed, well-mixed integer hash, so a draw is
// the same bits on every machine and compiler.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A uniform double in [0, 1) for (sweep seed, configuration, axis).
double unit_draw(uint64_t seed, uint64_t config, uint64_t axis) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ config) ^ (axis + 1));
  return double(h >> 11) * 0x1.0p-53;
}

json draw(const RandomAxis& ax, double u) {
  if (ax.distribution == "choice") {
    const size_t n = ax.values.size();
    return ax.values[std::min(n - 1, size_t(u * double(n)))];
  }
  if (ax.distribution == "int_uniform") {
    const int64_t lo = int64_t(ax.min), hi = int64_t(ax.max);
    const auto span = uint64_t(hi - lo) + 1;
    return lo + int64_t(std::min(span - 1, uint64_t(u * double(span))));
  }
  if (ax.distribution == "log_uniform")
    return std::exp(std::log(ax.min) + u * (std::log(ax.max) - std::log(ax.min)));
  return ax.min + u * (ax.max - ax.min);
}

int64_t grid_points(const SweepSpec& s) {
  int64_t n = 1;
  for (const auto& [f, vals] : s.grid) n *= int64_t(vals.size());
  return n;
}

}  // namespace

int64_t SweepSpec::full_count() const {
  return grid_points(*this) * samples * std::max<int64_t>(1, int64_t(seeds.size()));
}

int64_t SweepSpec::trial_count() const {
  return budget ? std::min(*budget, full_count()) : full_count();
}

SweepSpec parse_sweep_spec(const json& j, const std::string& what, const std::string& base_dir) {
  if (!j.is_object()) fail(what, "(top level)", "a sweep spec is a JSON object");
  static const std::set<std::string> keys = {
      "name",   "preset",  "config", "set",    "data", "tokenizer",  "grid",
      "random", "samples", "seeds",  "budget", "seed", "description"};
  for (auto& [k, v] : j.items())
    if (!keys.count(k))
      fail(what, k,
           "unknown key (known: name, preset, config, set, data, tokenizer, grid, random, "
           "samples, seeds, budget, seed, description)");
  SweepSpec s;
  s.source = j;
  s.name =
      j.contains("name") ? get_string(j["name"], what, "name") : fs::path(what).stem().string();
  if (s.name.empty()) fail(what, "name", "must not be empty");
  if (j.contains("preset") && j.contains("config"))
    fail(what, "preset", "give preset or config, not both");
  if (j.contains("preset")) s.preset = get_string(j["preset"], what, "preset");
  if (j.contains("config")) {
    if (j["config"].is_string()) {
      s.config_path = absolute_from(j["config"].get<std::string>(), base_dir);
      s.source["config"] = s.config_path;
    } else if (j["config"].is_object()) {
      s.config_inline = j["config"];
    } else {
      fail(what, "config", "must be a file path or an inline {\"model\", \"train\"} object");
    }
  }
  if (!j.contains("preset") && !j.contains("config")) s.preset = "gpt-tiny";
  if (j.contains("set")) {
    if (!j["set"].is_array()) fail(what, "set", "must be an array of \"field=value\" strings");
    for (size_t i = 0; i < j["set"].size(); ++i)
      s.set.push_back(get_string(j["set"][i], what, "set[" + std::to_string(i) + "]"));
  }
  if (j.contains("data")) {
    s.data_path = absolute_from(get_string(j["data"], what, "data"), base_dir);
    s.source["data"] = s.data_path;
  }
  if (j.contains("tokenizer")) {
    s.tokenizer = get_string(j["tokenizer"], what, "tokenizer");
    if (s.tokenizer != "char" && s.tokenizer != "byte")
      fail(what, "tokenizer", "must be \"char\" or \"byte\", got '" + s.tokenizer + "'");
  }
  if (j.contains("grid")) {
    if (!j["grid"].is_object()) fail(what, "grid", "must be an object {field: [values...]}");
    for (auto& [f, vals] : j["grid"].items()) {  // nlohmann::json keeps keys sorted
      check_field_path(f, what, "grid");
      if (!vals.is_array() || vals.empty())
        fail(what, "grid." + f, "must be a non-empty array of values");
      s.grid.emplace_back(f, std::vector<json>(vals.begin(), vals.end()));
    }
  }
  if (j.contains("random")) {
    if (!j["random"].is_object()) fail(what, "random", "must be an object {field: {distribution}}");
    for (auto& [f, a] : j["random"].items()) {
      check_field_path(f, what, "random");
      if (j.contains("grid") && j["grid"].contains(f))
        fail(what, "random." + f, "is also a grid axis; a field can be one axis only");
      s.random.push_back(parse_random_axis(f, a, what));
    }
  }
  if (j.contains("seeds")) {
    const json& sd = j["seeds"];
    if (sd.is_number_integer()) {
      const int64_t n = get_count(sd, what, "seeds", 1, 10000);
      for (int64_t i = 0; i < n; ++i) s.seeds.push_back(i);
    } else if (sd.is_array() && !sd.empty()) {
      for (size_t i = 0; i < sd.size(); ++i)
        s.seeds.push_back(get_count(sd[i], what, "seeds[" + std::to_string(i) + "]", 0,
                                    std::numeric_limits<int32_t>::max()));
    } else {
      fail(what, "seeds", "must be a count (seeds 0..N-1) or a non-empty array of seeds");
    }
  }
  if (j.contains("budget")) s.budget = get_count(j["budget"], what, "budget", 1, kMaxTrials);
  if (j.contains("seed"))
    s.seed = uint64_t(get_count(j["seed"], what, "seed", 0, std::numeric_limits<int64_t>::max()));
  // The grid alone is checked first, in steps, so that neither its product
  // nor the samples derived from it below overflow (20 axes of 10 values did).
  {
    int64_t points = 1;
    for (const auto& [f, vals] : s.grid)
      if ((points *= int64_t(vals.size())) > kMaxTrials) fail_too_many(what);
  }
  if (j.contains("samples")) {
    s.samples = get_count(j["samples"], what, "samples", 1, kMaxTrials);
    if (s.random.empty()) fail(what, "samples", "needs random axes to draw from");
  } else if (!s.random.empty()) {
    // Random search without an explicit sample count: as many draws as the budget allows.
    if (!s.budget) fail(what, "samples", "random axes need samples or budget (how many draws)");
    const int64_t per_draw = grid_points(s) * std::max<int64_t>(1, int64_t(s.seeds.size()));
    s.samples = std::max<int64_t>(1, (*s.budget + per_draw - 1) / per_draw);
  }
  if (s.grid.empty() && s.random.empty() && s.seeds.empty())
    fail(what, "grid", "a sweep needs at least one of grid, random or seeds");
  // Checked in steps, so no product overflows before it is compared.
  int64_t n = 1;
  for (const auto& [f, vals] : s.grid) {
    n *= int64_t(vals.size());
    if (n > kMaxTrials) break;
  }
  if (n <= kMaxTrials) n *= s.samples;
  if (n <= kMaxTrials) n *= std::max<int64_t>(1, int64_t(s.seeds.size()));
  if (n > kMaxTrials) fail_too_many(what);
  return s;
}

SweepSpec load_sweep_spec(const std::string& path) {
  const std::string text = read_regular_file(path, 1 << 20);
  check_json_depth(text, path);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw SweepSpecError(path + ": not valid JSON");
  const std::string dir = fs::absolute(path).parent_path().string();
  return parse_sweep_spec(j, path, dir);
}

SweepTrial sweep_trial(const SweepSpec& spec, int64_t index) {
  if (index < 0 || index >= spec.trial_count())
    throw std::out_of_range("trial " + std::to_string(index) + " of sweep '" + spec.name +
                            "' does not exist (it has " + std::to_string(spec.trial_count()) +
                            " trials, 0.." + std::to_string(spec.trial_count() - 1) + ")");
  const int64_t nseeds = std::max<int64_t>(1, int64_t(spec.seeds.size()));
  const int64_t config = index / nseeds;  // grid point x random sample
  const int64_t point = config / spec.samples;
  SweepTrial t;
  t.index = index;
  t.params = json::object();
  // Grid: the last axis varies fastest.
  int64_t rest = point;
  std::vector<json> chosen(spec.grid.size());
  for (size_t a = spec.grid.size(); a-- > 0;) {
    const auto& vals = spec.grid[a].second;
    chosen[a] = vals[size_t(rest % int64_t(vals.size()))];
    rest /= int64_t(vals.size());
  }
  for (size_t a = 0; a < spec.grid.size(); ++a) {
    t.set.push_back(spec.grid[a].first + "=" + chosen[a].dump());
    t.params[spec.grid[a].first] = chosen[a];
  }
  // Random: one draw per (configuration, axis); seeds of one configuration share it.
  for (size_t a = 0; a < spec.random.size(); ++a) {
    const json v = draw(spec.random[a], unit_draw(spec.seed, uint64_t(config), a));
    t.set.push_back(spec.random[a].field + "=" + v.dump());
    t.params[spec.random[a].field] = v;
  }
  if (!spec.seeds.empty()) {
    t.seed = spec.seeds[size_t(index % nseeds)];
    t.params["seed"] = *t.seed;
  }
  return t;
}

std::vector<SweepTrial> expand_sweep(const SweepSpec& spec) {
  std::vector<SweepTrial> out;
  const int64_t n = spec.trial_count();
  out.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(sweep_trial(spec, i));
  return out;
}

RunSpec trial_run_spec(const SweepSpec& spec, const SweepTrial& trial, const std::string& db_path,
                       int64_t sweep_id) {
  RunSpec r;
  r.kind = RunKind::kFresh;
  if (!spec.config_inline.is_null()) {
    r.config = preset_from_json(spec.config_inline);
    r.preset_name = spec.name;
  } else if (!spec.config_path.empty()) {
    r.config_path = spec.config_path;
  } else {
    r.preset_name = spec.preset;
  }
  r.set = spec.set;
  r.set.insert(r.set.end(), trial.set.begin(), trial.set.end());
  r.train.seed = trial.seed;
  r.data_path = spec.data_path;
  r.tokenizer = spec.tokenizer;
  r.db_path = db_path;
  r.name = spec.name + " #" + std::to_string(trial.index);
  r.sweep_id = sweep_id;
  r.sweep_trial = trial.index;
  return r;
}

void check_sweep_trials(const SweepSpec& spec) {
  Preset base;
  try {
    if (!spec.config_inline.is_null())
      base = preset_from_json(spec.config_inline);
    else if (!spec.config_path.empty())
      base = load_preset_file(spec.config_path);
    else
      base = load_preset(spec.preset);
    base = apply_set_overrides(base, spec.set);
  } catch (const std::exception& e) {
    throw SweepSpecError("sweep '" + spec.name + "': base config: " + e.what());
  }
  const int64_t n = spec.trial_count();
  for (int64_t i = 0; i < n; ++i) {
    const SweepTrial t = sweep_trial(spec, i);
    try {
      Preset p = apply_set_overrides(base, t.set);
      if (t.seed) p.train.seed = *t.seed;
      const std::vector<std::string> errs = validation_errors(p);
      if (!errs.empty()) throw ConfigError(errs);
    } catch (const std::exception& e) {
      throw SweepSpecError("sweep '" + spec.name + "': trial " + std::to_string(i) + " (" +
                           t.params.dump() + "): " + e.what());
    }
  }
}

}  // namespace bl
