// Optimizer step and gradient clipping over the parameter sets of the tiny
// (818,048 params) and small (4,821,248 params) reference configs.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "tensor/gemm.h"
#include "tensor/parameter.h"
#include "tensor/rng.h"
#include "train/grad_clip.h"
#include "train/optimizer.h"

namespace {

struct ParamSet {
  std::vector<std::unique_ptr<bl::Parameter>> owned;
  std::vector<bl::Parameter*> ptrs;
  int64_t count = 0;
  void add(const std::string& name, const bl::Shape& s) {
    owned.push_back(std::make_unique<bl::Parameter>(name, s));
    ptrs.push_back(owned.back().get());
    count += s.numel();
  }
};

// GPT with layer norm + bias, learned positions, tied head (torch_ref's tiny/small).
ParamSet gpt_params(int64_t V, int64_t d, int64_t L, int64_t dff, int64_t T) {
  ParamSet ps;
  ps.add("wte", bl::Shape{V, d});
  ps.add("wpe", bl::Shape{T, d});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    ps.add(p + "n1.weight", bl::Shape{d});
    ps.add(p + "n1.bias", bl::Shape{d});
    for (const char* m : {"q", "k", "v", "o"}) {
      ps.add(p + m + ".weight", bl::Shape{d, d});
      ps.add(p + m + ".bias", bl::Shape{d});
    }
    ps.add(p + "n2.weight", bl::Shape{d});
    ps.add(p + "n2.bias", bl::Shape{d});
    ps.add(p + "w1.weight", bl::Shape{dff, d});
    ps.add(p + "w1.bias", bl::Shape{dff});
    ps.add(p + "w2.weight", bl::Shape{d, dff});
    ps.add(p + "w2.bias", bl::Shape{d});
  }
  ps.add("nf.weight", bl::Shape{d});
  ps.add("nf.bias", bl::Shape{d});
  bl::Rng rng(1);
  for (auto* p : ps.ptrs) {
    p->init_normal(rng, 0.02f);
    for (int64_t i = 0; i < p->numel(); ++i) p->grad()[i] = float(rng.normal() * 1e-3);
  }
  return ps;
}

ParamSet config_params(int64_t which) {
  return which == 0 ? gpt_params(65, 128, 4, 512, 128) : gpt_params(65, 256, 6, 1024, 256);
}

// Args: {config (0 = tiny, 1 = small), threads}
void BM_OptimizerStep(benchmark::State& st, const char* name) {
  bl::set_num_threads(int(st.range(1)));
  ParamSet ps = config_params(st.range(0));
  auto opt = bl::make_optimizer(name, ps.ptrs);
  for (auto _ : st) {
    opt->step(1e-4f);
    benchmark::ClobberMemory();
  }
  st.counters["params"] = double(ps.count);
  st.counters["Mparam/s"] = benchmark::Counter(double(ps.count) * double(st.iterations()) / 1e6,
                                               benchmark::Counter::kIsRate);
  bl::set_num_threads(1);
}
BENCHMARK_CAPTURE(BM_OptimizerStep, adamw, "adamw")
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_OptimizerStep, lion, "lion")
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_OptimizerStep, adafactor, "adafactor")
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_OptimizerStep, sgd, "sgd")
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Global grad norm (max_norm is never reached, so only the norm pass runs).
void BM_ClipGradNorm(benchmark::State& st) {
  bl::set_num_threads(int(st.range(1)));
  ParamSet ps = config_params(st.range(0));
  for (auto _ : st) {
    benchmark::DoNotOptimize(bl::clip_grad_norm(ps.ptrs, 1e9));  // norm only: no rescale
  }
  st.counters["params"] = double(ps.count);
  bl::set_num_threads(1);
}
BENCHMARK(BM_ClipGradNorm)
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
