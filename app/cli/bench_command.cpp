// Throughput benchmark: W warm-up steps, then N timed training steps; prints one
// JSON line with median step time, tokens/s and memory (peak and steady RSS).
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
    rss.push_back(rss_mb());
  }
  std::vector<double> step_ms, rss;
};
}  // namespace

int bench_command(const std::vector<std::string>& argv) {
  auto value_opts = run_value_options();
  value_opts.insert("warmup-steps");
  Args args(argv, value_opts, {});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const int64_t steps = args.get_int("steps", 1).value_or(50);
  const int64_t warm = args.get_int("warmup-steps", 0).value_or(5);
  // The run covers warm-up + timed steps; evaluation is off so only training is
  // timed; nothing is recorded.
  RunSpec spec = fresh_run_spec(args);
  spec.record = false;
  spec.train.max_steps = warm + steps;
  spec.train.eval_interval = 0;
  if (!args.get("warmup")) spec.train.warmup_steps = 0;  // the lr schedule does not matter here
  spec.set = {"train.eval_batches=1", "train.log_interval=0"};
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
      {"tokens_per_sec", tokens / (median / 1000.0)},
      {"gflops", run->model().flops_per_token(tc.seq_len) * tokens / (median / 1000.0) / 1e9},
      {"rss_after_warmup_mb", rec.rss[size_t(warm > 0 ? warm - 1 : 0)]},
      {"rss_end_mb", rec.rss.back()},
      {"peak_rss_mb", peak_rss_mb()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace bl::cli
