// GEMM throughput on the shapes a training step uses (gpt-tiny / gpt-small):
// forward y = x Wᵀ (NT), input grad dx = dy W (NN), weight grad dW = dyᵀ x (TN).
#include <benchmark/benchmark.h>

#include <vector>

#include "tensor/gemm.h"

namespace {

void run(benchmark::State& st, bool ta, bool tb) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  bl::set_num_threads(int(st.range(3)));
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(n * k), 0.25f), c(size_t(m * n));
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  for (auto _ : st) {
    bl::gemm(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GFLOPs"] =
      benchmark::Counter(2.0 * double(m * n * k) * double(st.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void BM_GemmForwardNT(benchmark::State& st) {
  run(st, false, true);
}
void BM_GemmInputGradNN(benchmark::State& st) {
  run(st, false, false);
}
void BM_GemmWeightGradTN(benchmark::State& st) {
  run(st, true, false);
}

// (m, n, k, threads): m = tokens per step (4096), n x k = the weight.
void shapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2}) {
    b->Args({4096, 128, 128, t});   // tiny attention projections
    b->Args({4096, 512, 128, t});   // tiny FFN up
    b->Args({4096, 128, 512, t});   // tiny FFN down
    b->Args({4096, 1024, 256, t});  // small FFN up
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_GemmForwardNT)->Apply(shapes);
BENCHMARK(BM_GemmInputGradNN)->Apply(shapes);
// Weight gradients: (out, in) = dyᵀ (out x 4096) times x (4096 x in).
BENCHMARK(BM_GemmWeightGradTN)
    ->Args({128, 128, 4096, 1})
    ->Args({512, 128, 4096, 1})
    ->Args({1024, 256, 4096, 1})
    ->Args({128, 128, 4096, 2})
    ->Args({512, 128, 4096, 2})
    ->Args({1024, 256, 4096, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
