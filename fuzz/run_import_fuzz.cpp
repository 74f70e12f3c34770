// Fuzzes `blocklab-cli runs import` with a hostile source: a file of fuzzed
// bytes is the published task database merged into a fresh main store
// (import_runs: the application id and schema checks, the ATTACH, the copy of
// runs, metrics, evals, samples, tags, checkpoints and sweeps, then the
// completion of finished Slurm sweeps). A source that cannot be imported is
// named in the report; import_runs itself may throw only the engine's own
// errors. The target must then open and read back whole, hold exactly the runs
// the report counts, and a second import must add nothing (import is keyed by
// run UUID).
#include "core/config.h"
#include "fuzz_util.h"
#include "store/experiment_store.h"
#include "sweep/run_transfer.h"
#include "sweep/sweep_spec.h"

namespace {

namespace fs = std::filesystem;

bool import_clean(const std::string& target, const std::string& src, bl::ImportReport& rep) {
  try {
    rep = bl::import_runs(target, {src});
    return true;
  } catch (const bl::StoreError&) {
  } catch (const bl::SweepSpecError&) {
  } catch (const bl::ConfigError&) {
  } catch (const std::exception& e) {
    fprintf(stderr, "import_runs threw a non-engine error: %s\n", e.what());
    abort();
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path dir = bl::fuzz::scratch_dir();
  // A fresh, empty main store: a copy of one made once (creating the schema
  // on every input would be most of the time spent).
  static const fs::path empty = [&] {
    const fs::path p = dir / "empty" / "experiments.db";
    fs::create_directories(p.parent_path());
    { bl::ExperimentStore create(p.string()); }
    return p;
  }();
  const fs::path src = dir / "src" / "experiments.db";
  const fs::path target_dir = dir / "target";
  fs::remove_all(dir / "src");
  fs::remove_all(target_dir);
  fs::create_directories(dir / "src");
  fs::create_directories(target_dir);
  bl::fuzz::write_file(src, data, size);
  const std::string target = (target_dir / "experiments.db").string();
  fs::copy_file(empty, target);

  bl::ImportReport rep;
  if (!import_clean(target, src.string(), rep)) return 0;
  if (rep.problems.empty() != (rep.databases == 1)) {
    fprintf(stderr, "%lld databases read, %zu problems\n", (long long)rep.databases,
            rep.problems.size());
    abort();
  }
  {
    auto s = bl::ExperimentStore::open_readonly(target);
    const std::vector<bl::RunRecord> runs = s.list_runs();
    if (int64_t(runs.size()) != rep.imported) {
      fprintf(stderr, "report says %lld runs imported, the target holds %zu\n",
              (long long)rep.imported, runs.size());
      abort();
    }
    for (const bl::RunRecord& r : runs) {
      s.get_run(r.id);
      for (const std::string& m : s.metric_names(r.id)) s.metrics(r.id, m);
      s.evals(r.id);
      s.samples(r.id);
      s.checkpoints(r.id);
    }
  }
  bl::ImportReport again;
  if (!import_clean(target, src.string(), again)) return 0;
  if (again.imported != 0) {
    fprintf(stderr, "importing the same database again added %lld runs\n",
            (long long)again.imported);
    abort();
  }
  return 0;
}
