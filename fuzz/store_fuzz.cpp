// Fuzzes the experiment database open path: a file of fuzzed bytes opened as a
// store read-write (schema check, migration, interrupted-run recovery) and
// read-only, then every run and its records read back.
#include "fuzz_util.h"
#include "store/experiment_store.h"

namespace {
void read_all(bl::ExperimentStore& s) {
  for (const bl::RunRecord& r : s.list_runs()) {
    s.get_run(r.id);
    for (const std::string& m : s.metric_names(r.id)) s.metrics(r.id, m);
    s.evals(r.id);
    s.samples(r.id);
    s.checkpoints(r.id);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = bl::fuzz::scratch_dir() / "experiments.db";
  for (const char* sfx : {"", "-wal", "-shm", "-journal"})
    std::filesystem::remove(path.string() + sfx);
  bl::fuzz::write_file(path, data, size);
  bl::fuzz::expect_clean([&] {
    auto s = bl::ExperimentStore::open_readonly(path.string());
    read_all(s);
  });
  bl::fuzz::expect_clean([&] {
    bl::ExperimentStore s(path.string());
    read_all(s);
  });
  return 0;
}
