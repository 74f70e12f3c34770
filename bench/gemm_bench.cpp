// GEMM throughput on the shapes a training step uses (gpt-tiny / gpt-small):
// forward y = x Wᵀ (NT), input grad dx = dy W (NN), weight grad dW = dyᵀ x (TN).
#include <benchmark/benchmark.h>

#include <vector>

#include "tensor/gemm.h"

namespace {

void run(benchmark::State& st, bool ta, bool tb) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  bl::set_num_threads(int(st.range(3)));
  bl::set_gemm_backend(st.range(4) ? bl::GemmBackend::eigen : bl::GemmBackend::automatic);
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

// Args: (m, n, k, threads, backend) with backend 0 = automatic (the engine's
// AVX-512 kernel on such builds), 1 = Eigen (over OpenBLAS when linked).
// Run with --benchmark_enable_random_interleaving=true for A/B comparisons.
// Weights are (out, in); m = tokens per step: 4096 in all three presets.
struct Weight {
  int64_t out, in;
};
// gpt-tiny: attention 128x128, qkv 384x128, FFN 512x128 / 128x512.
// gpt-small: qkv 768x256, FFN 1024x256 / 256x1024.
// llama-small: GQA qkv 384x256, SwiGLU gate+up 683x256, down 256x683.
constexpr Weight kWeights[] = {{128, 128},  {384, 128},  {512, 128}, {128, 512}, {768, 256},
                               {1024, 256}, {256, 1024}, {683, 256}, {256, 683}};

template <int Form>  // 0: y = x Wᵀ, 1: dx = dy W, 2: dW = dyᵀ x
void shapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2})
    for (const Weight& w : kWeights)
      for (int backend : {0, 1}) {
        if (Form == 0) b->Args({4096, w.out, w.in, t, backend});
        if (Form == 1) b->Args({4096, w.in, w.out, t, backend});
        if (Form == 2) b->Args({w.out, w.in, 4096, t, backend});
      }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_GemmForwardNT)->Apply(shapes<0>);
BENCHMARK(BM_GemmInputGradNN)->Apply(shapes<1>);
BENCHMARK(BM_GemmWeightGradTN)->Apply(shapes<2>);
