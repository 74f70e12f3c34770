// Times forward + backward of one attention-slot layer (a token mixer) on a
// random (B, T, d_model) input with a random output gradient, at the thread
// count in state.range(0); reports tokens/s. Shared by the mixer benchmarks.
#pragma once

#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "core/components.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"

namespace bl {

inline void time_layer(benchmark::State& state, Attention& layer, PositionEncoding& pos, int64_t B,
                       int64_t T, int64_t d) {
  Rng rng(1);
  for (Parameter* p : layer.parameters()) p->init_normal(rng, 0.02f);
  layer.init_custom(rng);
  Parameter x("x", Shape{B, T, d});
  x.init_normal(rng, 1.0f);
  std::vector<float> dy(size_t(B * T * d));
  for (auto& v : dy) v = float(rng.normal());
  const int saved = num_threads();
  set_num_threads(int(state.range(0)));
  Graph& g = current_graph();
  g.clear();
  for (auto _ : state) {
    Tensor y = layer.forward(x.tensor(), pos, nullptr);
    std::memcpy(g.grad(y), dy.data(), sizeof(float) * dy.size());
    g.run_tape();
    g.clear();
  }
  set_num_threads(saved);
  state.SetItemsProcessed(state.iterations() * B * T);
}

}  // namespace bl
