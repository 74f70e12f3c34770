// Quantized vs float matmul on d_model = 512 shapes (prefill rows = 256 tokens
// and a single decoding row), and a LoRA / QLoRA training step vs a full
// fine-tuning step on the gpt-tiny preset (batch 8 x 128 tokens, AdamW).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "core/presets.h"
#include "lora/lora.h"
#include "ops/matmul.h"
#include "quant/quantize.h"
#include "quant/quantized_linear.h"
#include "tensor/graph.h"
#include "train/optimizer.h"

namespace {

using namespace bl;

// Args: rows (tokens), out features; in = 512. mode: 0 float, 1 affine8, 2 affine4, 3 nf4.
void run_matmul(benchmark::State& state, int mode) {
  const int64_t n = state.range(0), out = state.range(1), in = 512;
  Rng rng(1);
  Parameter w("w", Shape{out, in}, false), x("x", Shape{n, in}, false);
  w.init_normal(rng, 0.02f);
  x.init_normal(rng, 1.0f);
  std::unique_ptr<QuantizedMatrix> q;
  const QuantSpec specs[] = {
      {}, {QuantMode::kAffine, 8, 64}, {QuantMode::kAffine, 4, 64}, {QuantMode::kNF4, 4, 64}};
  if (mode) q = std::make_unique<QuantizedMatrix>(w.data(), out, in, specs[mode]);
  Graph& g = current_graph();
  NoGradGuard ng;
  for (auto _ : state) {
    Tensor y = q ? quantized_linear(x.tensor(), *q) : linear(x.tensor(), w.tensor());
    benchmark::DoNotOptimize(y.data());
    g.clear();
  }
  state.counters["weight_bytes"] = double(q ? q->bytes() : 4 * out * in);
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_MatmulFloat(benchmark::State& s) {
  run_matmul(s, 0);
}
void BM_MatmulAffine8(benchmark::State& s) {
  run_matmul(s, 1);
}
void BM_MatmulAffine4(benchmark::State& s) {
  run_matmul(s, 2);
}
void BM_MatmulNF4(benchmark::State& s) {
  run_matmul(s, 3);
}
#define MATMUL_ARGS       \
  ->Args({256, 512})      \
      ->Args({256, 2048}) \
      ->Args({1, 2048})   \
      ->UseRealTime()     \
      ->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_MatmulFloat) MATMUL_ARGS;
BENCHMARK(BM_MatmulAffine8) MATMUL_ARGS;
BENCHMARK(BM_MatmulAffine4) MATMUL_ARGS;
BENCHMARK(BM_MatmulNF4) MATMUL_ARGS;

// mode: 0 full fine-tuning, 1 LoRA r=8 on q,v, 2 LoRA r=8 on all Linears, 3 QLoRA (nf4) r=8 on all.
void BM_TrainStep(benchmark::State& state) {
  const int mode = int(state.range(0));
  Preset p = load_preset("gpt-tiny");
  LanguageModel model(p.model);
  Rng rng(1);
  model.init_weights(rng);
  if (mode == 3) quantize_model(model, 4, 64, "nf4");
  if (mode == 1) apply_lora(model, 8, 16.0f, {"q", "v"});
  if (mode >= 2) apply_lora(model, 8, 16.0f, {"all"});
  std::vector<Parameter*> params;
  for (Parameter* q : model.parameters())
    if (q->trainable()) params.push_back(q);
  auto opt = make_optimizer("adamw", params);
  const int64_t B = 8, T = p.train.seq_len;
  std::vector<int32_t> ids(size_t(B * T)), tg(size_t(B * T));
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = int32_t(rng.below(65));
    tg[i] = int32_t(rng.below(65));
  }
  Graph& g = current_graph();
  for (auto _ : state) {
    opt->zero_grad();
    Tensor loss = model.loss(Tokens{ids.data(), Shape{B, T}}, Tokens{tg.data(), Shape{B, T}});
    g.backward(loss);
    g.clear();
    opt->step(1e-3f);
  }
  state.counters["trainable_params"] = double(trainable_parameter_count(model));
  state.SetItemsProcessed(state.iterations() * B * T);  // tokens/s
}
BENCHMARK(BM_TrainStep)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
