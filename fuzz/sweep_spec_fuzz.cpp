// Fuzzes the sweep spec reader (`blocklab-cli sweep SPEC.json`, the Sweep
// dialog): JSON parsing, every key's rule, the trial-count bounds, then trial
// expansion (grid indexing, random draws, seeds) of the first and last trials
// and, for small sweeps, the check of every trial's config. A refusal must name
// the spec file; a drawn int_uniform value must lie in [min, max] and a choice
// must be one of its values.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "sweep/sweep_spec.h"

namespace {

void check_trial(const bl::SweepSpec& spec, int64_t index) {
  const bl::SweepTrial t = bl::sweep_trial(spec, index);
  if (t.index != index || t.set.size() != spec.grid.size() + spec.random.size()) abort();
  for (const bl::RandomAxis& ax : spec.random) {
    const nlohmann::json& v = t.params.at(ax.field);
    if (ax.distribution == "int_uniform") {
      if (!v.is_number_integer()) abort();
      const double x = v.get<double>();
      if (x < ax.min || x > ax.max) {
        fprintf(stderr, "int_uniform draw %s outside [%g, %g]\n", v.dump().c_str(), ax.min, ax.max);
        abort();
      }
    } else if (ax.distribution == "choice") {
      if (std::find(ax.values.begin(), ax.values.end(), v) == ax.values.end()) abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = bl::fuzz::scratch_dir() / "sweep.json";
  bl::fuzz::write_file(path, data, size);
  bl::SweepSpec spec;
  bool parsed = false;
  bl::fuzz::expect_clean_naming(
      [&] {
        spec = bl::load_sweep_spec(path.string());
        parsed = true;
      },
      path.string());
  if (!parsed) return 0;
  const int64_t n = spec.trial_count();
  if (n < 1 || n > spec.full_count()) abort();
  for (int64_t i : {int64_t(0), n / 2, n - 1}) check_trial(spec, i);
  // Out-of-range indices are refused, not read out of bounds.
  for (int64_t i : {int64_t(-1), n}) {
    try {
      bl::sweep_trial(spec, i);
      abort();
    } catch (const std::out_of_range&) {
    }
  }
  // Every trial's config through the --set override code (bounded: each check
  // builds a config).
  if (n <= 16) bl::fuzz::expect_clean([&] { bl::check_sweep_trials(spec); });
  return 0;
}
