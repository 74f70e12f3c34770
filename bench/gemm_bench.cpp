#include <benchmark/benchmark.h>

#include <vector>

#include "tensor/gemm.h"

// C(m,n) = A(m,k) Bᵀ with B (n,k): the linear-layer forward shape.
static void BM_GemmLinearForward(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  bl::set_num_threads(int(st.range(3)));
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(n * k), 0.25f), c(size_t(m * n));
  for (auto _ : st) {
    bl::gemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GFLOPs"] =
      benchmark::Counter(2.0 * m * n * k * double(st.iterations()), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmLinearForward)
    ->Args({4096, 128, 128, 1})->Args({4096, 128, 128, 2})
    ->Args({4096, 512, 128, 1})->Args({4096, 512, 128, 2})
    ->Args({4096, 256, 1024, 1})->Args({4096, 256, 1024, 2})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
