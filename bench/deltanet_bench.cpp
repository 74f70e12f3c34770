// One attention-slot layer, forward + backward, at B = 8, T = 128 (and a
// long-context T = 1024 at B = 1), d_model = 128, 4 heads of 32:
// gated_deltanet (chunkwise form, with and without the short conv) against
// gqa (4 query / 4 KV heads, RoPE) of the same width; then the mixing ops
// alone. Layer args: {threads, chunk (0 = default), T}. Run with
// --benchmark_repetitions=7 and read the medians.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/attention/gated_deltanet.h"
#include "core/components.h"
#include "core/config.h"
#include "layer_bench.h"
#include "ops/attention.h"
#include "ops/gated_delta_rule.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"

namespace bl {
namespace {

void layer_bench(benchmark::State& state, const std::string& attention, bool conv) {
  const int64_t T = state.range(2), B = T > 128 ? 1 : 8, d = 128;
  BlockConfig c;
  c.attention = attention;
  c.d_model = d;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.bias = false;
  c.max_seq_len = T;
  c.position = attention == "gqa" ? "rope" : "none";
  c.use_short_conv = conv;
  std::unique_ptr<Attention> layer = attention_registry().create(attention, c);
  std::unique_ptr<PositionEncoding> pos = position_registry().create(c.position, c);
  if (auto* dn = dynamic_cast<GatedDeltaNet*>(layer.get()); dn && state.range(1) > 0)
    dn->set_chunk_size(state.range(1));
  time_layer(state, *layer, *pos, B, T, d);
}

void BM_Layer_GatedDeltaNet(benchmark::State& s) {
  layer_bench(s, "gated_deltanet", false);
}
void BM_Layer_GatedDeltaNet_Conv(benchmark::State& s) {
  layer_bench(s, "gated_deltanet", true);
}
void BM_Layer_GQA(benchmark::State& s) {
  layer_bench(s, "gqa", false);
}

// The mixing ops alone (no projections), same shapes: 4 heads of 32.
void BM_Op_GatedDeltaRule(benchmark::State& state) {
  const int64_t B = 8, T = 128, D = state.range(2), H = 128 / D;
  Rng rng(1);
  Parameter q("q", Shape{B, T, H * D}), k("k", Shape{B, T, H * D}), v("v", Shape{B, T, H * D});
  Parameter g("g", Shape{B, T, H}), beta("beta", Shape{B, T, H});
  for (Parameter* p : {&q, &k, &v, &g, &beta}) p->init_normal(rng, 1.0f);
  for (int64_t i = 0; i < k.numel(); ++i) k.data()[i] /= std::sqrt(float(D));
  for (int64_t i = 0; i < g.numel(); ++i) {
    g.data()[i] = -0.1f * std::abs(g.data()[i]);
    beta.data()[i] = 0.5f;
  }
  const int64_t chunk = state.range(1);
  const int saved = num_threads();
  set_num_threads(int(state.range(0)));
  Graph& gr = current_graph();
  gr.clear();
  for (auto _ : state) {
    Tensor y = gated_delta_rule(q.tensor(), k.tensor(), v.tensor(), g.tensor(), beta.tensor(), H,
                                1.0f / D, chunk);
    float* dy = gr.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) dy[i] = 1e-3f * float(i % 7);
    gr.run_tape();
    gr.clear();
  }
  set_num_threads(saved);
}
void BM_Op_Attention(benchmark::State& state) {
  constexpr int64_t B = 8, T = 128, H = 4, D = 32;
  Rng rng(1);
  Parameter q("q", Shape{B, T, H * D}), k("k", Shape{B, T, H * D}), v("v", Shape{B, T, H * D});
  for (Parameter* p : {&q, &k, &v}) p->init_normal(rng, 1.0f);
  AttentionOptions o;
  o.scale = 1.0f / std::sqrt(float(D));
  const int saved = num_threads();
  set_num_threads(int(state.range(0)));
  Graph& gr = current_graph();
  gr.clear();
  for (auto _ : state) {
    Tensor y = attention(q.tensor(), k.tensor(), v.tensor(), H, H, o);
    float* dy = gr.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) dy[i] = 1e-3f * float(i % 7);
    gr.run_tape();
    gr.clear();
  }
  set_num_threads(saved);
}

void thread_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads", "chunk", "T"});
  for (int th : {1, 2}) b->Args({th, 0, 128});
  b->Args({1, 0, 1024});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_Layer_GatedDeltaNet)->Apply(thread_args)->Args({1, 16, 128})->Args({1, 64, 128});
BENCHMARK(BM_Layer_GatedDeltaNet_Conv)->Apply(thread_args);
BENCHMARK(BM_Layer_GQA)->Apply(thread_args);
// Args {threads, chunk, head_dim}: chunk-size sweep at width 128.
BENCHMARK(BM_Op_GatedDeltaRule)
    ->ArgNames({"threads", "chunk", "head_dim"})
    ->ArgsProduct({{1, 2}, {16, 32, 64}, {32}})
    ->ArgsProduct({{1}, {16, 32, 64}, {64, 128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Op_Attention)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace bl
