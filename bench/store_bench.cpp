// Cost of experiment logging, to show it stays far below 1% of a ~100 ms
// training step: log_metric per row (5 metrics per step, default batching),
// buffering alone, and one 256-row flush. The database lives in $TMPDIR.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "store/experiment_store.h"

namespace {

namespace fs = std::filesystem;

const char* const kNames[] = {"train/loss", "lr", "grad_norm", "tokens_per_sec", "step_ms"};

// A fresh database in a temporary directory, removed afterwards.
struct BenchDb {
  BenchDb() {
    std::string tmpl = (fs::temp_directory_path() / "bl_store_bench_XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    path = (fs::path(dir) / "bench.db").string();
  }
  ~BenchDb() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string dir, path;
};

// One training step's worth of metrics (5 rows) with the default batching
// (flush every 256 rows or 1 s): the per-step cost the trainer pays,
// flushes amortised in.
void BM_StoreLogStep(benchmark::State& st) {
  BenchDb db;
  bl::ExperimentStore s(db.path);
  const int64_t run = s.create_run({});
  int64_t step = 0;
  for (auto _ : st) {
    for (int k = 0; k < 5; ++k)
      s.log_metric(run, step, step * 0.1, kNames[k], 1.0 / (step + k + 1));
    ++step;
  }
  s.flush();
  st.SetItemsProcessed(st.iterations() * 5);  // rows
  st.counters["time_per_row"] = benchmark::Counter(
      double(st.iterations()) * 5, benchmark::Counter::kIsRate | benchmark::Counter::kInvert,
      benchmark::Counter::kIs1000);
}
BENCHMARK(BM_StoreLogStep)->Unit(benchmark::kMicrosecond);

// Buffering alone (no flush inside the timed region).
void BM_StoreLogMetricBufferOnly(benchmark::State& st) {
  BenchDb db;
  bl::ExperimentStore s(db.path, {.flush_rows = size_t(1) << 30, .flush_interval_s = 1e9});
  const int64_t run = s.create_run({});
  int64_t step = 0;
  for (auto _ : st) {
    s.log_metric(run, step, step * 0.1, kNames[step % 5], 0.5);
    ++step;
    if (s.pending_rows() >= 65536) {
      st.PauseTiming();
      s.flush();
      st.ResumeTiming();
    }
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_StoreLogMetricBufferOnly);

// One flush of 256 buffered rows: BEGIN IMMEDIATE, 256 cached-statement
// inserts, COMMIT (WAL, synchronous=NORMAL: no fsync on commit).
void BM_StoreFlush256(benchmark::State& st) {
  BenchDb db;
  bl::ExperimentStore s(db.path, {.flush_rows = size_t(1) << 30, .flush_interval_s = 1e9});
  const int64_t run = s.create_run({});
  int64_t step = 0;
  for (auto _ : st) {
    st.PauseTiming();
    for (int i = 0; i < 256; ++i) {
      s.log_metric(run, step, step * 0.1, kNames[i % 5], 0.5);
      if (i % 5 == 4) ++step;
    }
    st.ResumeTiming();
    s.flush();
  }
  st.SetItemsProcessed(st.iterations() * 256);
}
BENCHMARK(BM_StoreFlush256)->Unit(benchmark::kMicrosecond);

}  // namespace
