// Byte-level BPE on tinyshakespeare (1.1 MB): training to 4k merges and
// encoding the whole corpus. Run: build/bench/blocklab_bench
// --benchmark_filter=Bpe --benchmark_repetitions=5 (README reports the median).
#include <benchmark/benchmark.h>

#include <string>

#include "core/presets.h"
#include "data/bpe_trainer.h"
#include "data/text_dataset.h"

namespace {

const std::string& corpus() {
  static const std::string text =
      bl::read_text_file(bl::resource_dir() + "/data/tinyshakespeare.txt");
  return text;
}

void BM_BpeTrain4kMerges(benchmark::State& state) {
  const std::string& text = corpus();
  for (auto _ : state) {
    bl::BpeTokenizer t = bl::train_bpe(text, 256 + 4096);
    benchmark::DoNotOptimize(t.vocab_size());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_BpeTrain4kMerges)->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_BpeEncodeCorpus(benchmark::State& state) {
  const std::string& text = corpus();
  static const bl::BpeTokenizer tok = bl::train_bpe(text, 256 + 4096);
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text).size());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_BpeEncodeCorpus)->Unit(benchmark::kMillisecond);

}  // namespace
