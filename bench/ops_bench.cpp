// Forward and forward+backward timings of the transformer hot ops at training
// shapes, at 1 and 2 threads. Args: {threads, backward (0 = forward only)}.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/norm.h"
#include "tensor/arena.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"

namespace bl {
namespace {

std::unique_ptr<Parameter> rand_param(const char* name, const Shape& s, Rng& rng) {
  auto p = std::make_unique<Parameter>(name, s);
  p->init_normal(rng, 1.0f);
  return p;
}

// Runs f (returning the op output) and, when backward is on, its backward with
// a fixed output gradient. The arena is warm after the first iteration.
template <class F>
void run(benchmark::State& state, F&& f, const std::vector<float>& dy) {
  const int threads = int(state.range(0));
  const bool backward = state.range(1) != 0;
  const int saved = num_threads();
  set_num_threads(threads);
  Graph& g = current_graph();
  g.clear();
  for (auto _ : state) {
    if (backward) {
      Tensor y = f();
      std::memcpy(g.grad(y), dy.data(), sizeof(float) * size_t(y.numel()));
      g.run_tape();
    } else {
      NoGradGuard ng;
      benchmark::DoNotOptimize(f().data());
    }
    g.clear();
  }
  set_num_threads(saved);
}

std::vector<float> rand_vec(int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = float(rng.normal());
  return v;
}

// Inputs as in a model: q, k and v live in arena memory (2 MiB pages, like
// the projections that produce them) and have no gradient buffers yet, so
// backward writes fresh ones.
void attention_bench(benchmark::State& state, int64_t b, int64_t t, int64_t h, int64_t d) {
  Rng rng(1);
  Arena store;
  const int64_t n = b * t * h * d;
  float* qkv = static_cast<float*>(store.alloc_bytes(sizeof(float) * size_t(3 * n)));
  const std::vector<float> init = rand_vec(3 * n, rng);
  std::memcpy(qkv, init.data(), sizeof(float) * size_t(3 * n));
  auto dy = rand_vec(n, rng);
  AttentionOptions o;
  o.scale = 0.17677669f;
  o.causal = true;
  run(
      state,
      [&] {
        Graph& g = current_graph();
        const Shape s{b, t, h * d};
        const bool grad = g.grad_enabled();
        return attention(g.wrap(qkv, s, nullptr, grad), g.wrap(qkv + n, s, nullptr, grad),
                         g.wrap(qkv + 2 * n, s, nullptr, grad), h, h, o);
      },
      dy);
}

void BM_Attention_B16_T256_H8_D32(benchmark::State& s) {
  attention_bench(s, 16, 256, 8, 32);
}
void BM_Attention_B32_T128_H4_D32(benchmark::State& s) {
  attention_bench(s, 32, 128, 4, 32);
}

// The FFN activation of gpt-tiny (4096 tokens x d_ff 512).
void BM_Gelu_4096x512(benchmark::State& state) {
  Rng rng(5);
  auto x = rand_param("x", Shape{4096, 512}, rng);
  auto dy = rand_vec(4096 * 512, rng);
  run(
      state, [&] { return gelu(x->tensor()); }, dy);
}

void BM_LayerNorm_4096x256(benchmark::State& state) {
  Rng rng(2);
  auto x = rand_param("x", Shape{4096, 256}, rng);
  auto w = rand_param("w", Shape{256}, rng);
  auto bias = rand_param("b", Shape{256}, rng);
  auto dy = rand_vec(4096 * 256, rng);
  run(
      state, [&] { return layer_norm(x->tensor(), w->tensor(), bias->tensor(), 1e-5f); }, dy);
}

void BM_RmsNorm_4096x256(benchmark::State& state) {
  Rng rng(3);
  auto x = rand_param("x", Shape{4096, 256}, rng);
  auto w = rand_param("w", Shape{256}, rng);
  auto dy = rand_vec(4096 * 256, rng);
  run(
      state, [&] { return rms_norm(x->tensor(), w->tensor(), 1e-6f); }, dy);
}

void BM_CrossEntropy_4096x65(benchmark::State& state) {
  Rng rng(4);
  auto x = rand_param("x", Shape{4096, 65}, rng);
  std::vector<int32_t> t(4096);
  for (auto& id : t) id = int32_t(rng.below(65));
  std::vector<float> dy = {1.0f};
  run(
      state,
      [&] {
        return cross_entropy(x->tensor(), Tokens{t.data(), Shape{4096}});
      },
      dy);
}

void thread_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads", "bwd"});
  for (int bwd : {0, 1})
    for (int th : {1, 2}) b->Args({th, bwd});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_Attention_B16_T256_H8_D32)->Apply(thread_args);
BENCHMARK(BM_Attention_B32_T128_H4_D32)->Apply(thread_args);
void BM_Attention_B2_T128_H4_D32(benchmark::State& s) {
  attention_bench(s, 2, 128, 4, 32);
}
BENCHMARK(BM_Attention_B2_T128_H4_D32)->Apply(thread_args);
BENCHMARK(BM_Gelu_4096x512)->Apply(thread_args);
BENCHMARK(BM_LayerNorm_4096x256)->Apply(thread_args);
BENCHMARK(BM_RmsNorm_4096x256)->Apply(thread_args);
BENCHMARK(BM_CrossEntropy_4096x65)->Apply(thread_args);

}  // namespace
}  // namespace bl
