// One token-mixing layer (the attention slot alone: projections + mixing),
// forward + backward at B = 8, T = 128, d_model = 128: mamba2 / mamba3 (SSD,
// chunk 128, N = 128, 4 heads of 64) against gqa (4 query / 2 KV heads, RoPE).
// Args: {threads}.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/components.h"
#include "core/config.h"
#include "layer_bench.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"

namespace bl {
namespace {

BlockConfig layer_config(const std::string& attention) {
  BlockConfig c;
  c.attention = attention;
  c.position = attention == "gqa" ? "rope" : "none";
  c.d_model = 128;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.bias = false;
  c.max_seq_len = 128;
  c.mamba_trapezoidal = c.mamba_bc_norm = c.mamba_complex_a = attention == "mamba3";
  return c;
}

void mixer_bench(benchmark::State& state, const std::string& attention) {
  const int64_t B = 8, T = 128, D = 128;
  BlockConfig c = layer_config(attention);
  validate(c);
  std::unique_ptr<Attention> layer = attention_registry().create(c.attention, c);
  std::unique_ptr<PositionEncoding> pos = position_registry().create(c.position, c);
  time_layer(state, *layer, *pos, B, T, D);
}

void BM_Layer_Mamba2_B8_T128_D128(benchmark::State& s) {
  mixer_bench(s, "mamba2");
}
void BM_Layer_Mamba3_B8_T128_D128(benchmark::State& s) {
  mixer_bench(s, "mamba3");
}
void BM_Layer_Gqa_B8_T128_D128(benchmark::State& s) {
  mixer_bench(s, "gqa");
}

void thread_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads"});
  for (int th : {1, 2}) b->Args({th});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_Layer_Mamba2_B8_T128_D128)->Apply(thread_args);
BENCHMARK(BM_Layer_Mamba3_B8_T128_D128)->Apply(thread_args);
BENCHMARK(BM_Layer_Gqa_B8_T128_D128)->Apply(thread_args);

}  // namespace
}  // namespace bl
