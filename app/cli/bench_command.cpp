// Throughput benchmark: W warm-up steps, then N timed training steps; prints one
// JSON line with median step time, tokens/s and memory (peak and steady RSS).
// With --decode: KV-cache / recurrent-state decoding speed of the same model
// (prefill of a prompt, then one token per forward pass).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "setup.h"
#include "simd/isa.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "train/trainer.h"

namespace bl::cli {

namespace {
double rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string key;
  while (f >> key) {
    if (key == "VmRSS:") {
      double kb;
      f >> kb;
      return kb / 1024.0;
    }
    f.ignore(1 << 20, '\n');
  }
  return -1;
}
double peak_rss_mb() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_maxrss) / 1024.0;
}

/// Records step times and RSS after every step.
class BenchRecorder : public Callback {
 public:
  void on_step_end(Trainer&, const StepMetrics& m) override {
    step_ms.push_back(m.step_time_ms);
    wall_s.push_back(m.wall_time_s);
    rss.push_back(rss_mb());
  }
  std::vector<double> step_ms, wall_s, rss;
};
double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Greedy decoding of `batch` rows: a prompt of prompt_len corpus tokens, then
// `tokens` single-token steps, repeated `reps` times after one warm-up pass.
nlohmann::json decode_bench(PreparedRun& run, int64_t batch, int64_t prompt_len, int64_t tokens,
                            int64_t reps) {
  LanguageModel& model = run.model();
  const int64_t max_len = model.config().block.max_seq_len;
  const int64_t vocab = model.config().vocab_size;
  if (prompt_len + tokens > max_len)
    throw UsageError("--prompt-len + --decode-tokens (" + std::to_string(prompt_len + tokens) +
                     ") must be at most the model's max_seq_len (" + std::to_string(max_len) + ")");
  const auto train = run.data().train();
  if (int64_t(train.size()) < prompt_len) throw UsageError("--prompt-len exceeds the corpus");
  std::vector<int32_t> prompt;
  for (int64_t b = 0; b < batch; ++b)
    prompt.insert(prompt.end(), train.begin(), train.begin() + prompt_len);
  NoGradGuard no_grad;
  Graph& g = current_graph();
  std::vector<double> prefill_ms, token_ms;
  using clock = std::chrono::steady_clock;
  auto ms_since = [](clock::time_point t) {
    return std::chrono::duration<double, std::milli>(clock::now() - t).count();
  };
  for (int64_t r = 0; r <= reps; ++r) {  // pass 0 warms caches and arenas up
    DecodeState state = model.make_decode_state(batch, max_len);
    auto t0 = clock::now();
    Tensor logits = model.forward(Tokens{prompt.data(), Shape{batch, prompt_len}}, &state);
    std::vector<int32_t> next(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      const float* row = logits.data() + ((b + 1) * prompt_len - 1) * vocab;
      next[size_t(b)] = int32_t(std::max_element(row, row + vocab) - row);
    }
    g.clear();
    if (r) prefill_ms.push_back(ms_since(t0));
    for (int64_t i = 0; i < tokens; ++i) {
      t0 = clock::now();
      logits = model.forward(Tokens{next.data(), Shape{batch, 1}}, &state);
      for (int64_t b = 0; b < batch; ++b) {
        const float* row = logits.data() + b * vocab;
        next[size_t(b)] = int32_t(std::max_element(row, row + vocab) - row);
      }
      g.clear();
      if (r) token_ms.push_back(ms_since(t0));
    }
  }
  const double per_step = median_of(token_ms);
  return {{"mode", "decode"},
          {"preset", run.plan().record.preset},
          {"threads", num_threads()},
          {"cpu", cpu_name()},
          {"kernel_isa", kernel_isa()},
          {"blas", blas_name()},
          {"params", model.num_parameters()},
          {"batch", batch},
          {"prompt_len", prompt_len},
          {"decode_tokens", tokens},
          {"repetitions", reps},
          {"prefill_ms", median_of(prefill_ms)},
          {"step_ms", per_step},
          {"step_ms_min", *std::min_element(token_ms.begin(), token_ms.end())},
          {"tokens_per_sec", double(batch) / (per_step / 1000.0)},
          {"peak_rss_mb", peak_rss_mb()}};
}

}  // namespace

int bench_command(const std::vector<std::string>& argv) {
  auto value_opts = run_value_options();
  for (const char* o :
       {"warmup-steps", "decode-tokens", "decode-batch", "prompt-len", "repeat", "set"})
    value_opts.insert(o);
  Args args(argv, value_opts, {"decode"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  if (args.flag("decode")) {
    for (const char* o : {"steps", "warmup-steps"})
      if (args.get(o)) throw UsageError(std::string("--") + o + " does not apply to --decode");
    RunSpec spec = fresh_run_spec(args);
    spec.record = false;
    std::unique_ptr<PreparedRun> run = launch_run(spec);
    const nlohmann::json j = decode_bench(*run, args.get_int("decode-batch", 1).value_or(1),
                                          args.get_int("prompt-len", 1).value_or(16),
                                          args.get_int("decode-tokens", 1).value_or(64),
                                          args.get_int("repeat", 1).value_or(5));
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  for (const char* o : {"decode-tokens", "decode-batch", "prompt-len", "repeat"})
    if (args.get(o)) throw UsageError(std::string("--") + o + " needs --decode");
  const int64_t steps = args.get_int("steps", 1).value_or(50);
  const int64_t warm = args.get_int("warmup-steps", 0).value_or(5);
  // The run covers warm-up + timed steps; evaluation is off so only training is
  // timed; nothing is recorded.
  RunSpec spec = fresh_run_spec(args);
  spec.record = false;
  spec.train.max_steps = warm + steps;
  spec.train.eval_interval = 0;
  if (!args.get("warmup")) spec.train.warmup_steps = 0;  // the lr schedule does not matter here
  // After the user's --set: these two always hold.
  spec.set.insert(spec.set.end(), {"train.eval_batches=1", "train.log_interval=0"});
  std::unique_ptr<PreparedRun> run = launch_run(spec);
  const TrainConfig& tc = run->preset().train;
  Trainer& trainer = run->trainer();
  BenchRecorder rec;
  trainer.add_callback(&rec);
  trainer.train();
  if (rec.step_ms.size() != size_t(warm + steps)) {
    std::fprintf(stderr, "bench: the run stopped after %zu of %lld steps\n", rec.step_ms.size(),
                 static_cast<long long>(warm + steps));
    return 1;
  }
  std::vector<double> timed(rec.step_ms.begin() + long(warm), rec.step_ms.end());
  std::vector<double> sorted = timed;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double tokens = double(trainer.tokens_per_step());
  nlohmann::json j = {
      {"preset", run->plan().record.preset},
      {"threads", num_threads()},
      {"cpu", cpu_name()},
      {"kernel_isa", kernel_isa()},
      {"blas", blas_name()},
      {"batch_size", tc.batch_size},
      {"seq_len", tc.seq_len},
      {"warmup_steps", warm},
      {"steps", steps},
      {"timed_steps", timed.size()},
      {"params", run->model().num_parameters()},
      {"flops_per_token", run->model().flops_per_token(tc.seq_len)},
      {"step_time_ms", median},
      {"step_time_ms_min", sorted.front()},
      {"step_time_ms_max", sorted.back()},
      // Mean wall time per timed step, callbacks included (step_time_ms
      // excludes them): what periodic diagnostics and metrics add shows here.
      {"wall_ms_per_step",
       1000.0 * (rec.wall_s.back() - (warm > 0 ? rec.wall_s[size_t(warm - 1)] : 0.0)) /
           double(steps)},
      {"tokens_per_sec", tokens / (median / 1000.0)},
      {"gflops", run->model().flops_per_token(tc.seq_len) * tokens / (median / 1000.0) / 1e9},
      // The launcher's meter measured the machine's GEMM peak at the end (eval/flops.h).
      {"peak_gflops", run->flops().report().peak_flops_per_sec / 1e9},
      {"mfu", run->flops().report().peak_flops_per_sec > 0
                  ? run->model().flops_per_token(tc.seq_len) * tokens / (median / 1000.0) /
                        run->flops().report().peak_flops_per_sec
                  : 0.0},
      {"rss_after_warmup_mb", rec.rss[size_t(warm > 0 ? warm - 1 : 0)]},
      {"rss_end_mb", rec.rss.back()},
      {"peak_rss_mb", peak_rss_mb()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace bl::cli
