#include "eval/flops.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

#include "tensor/gemm.h"

namespace bl {

double measured_peak_flops(int threads) {
  static std::mutex mu;
  static std::map<int, double> cache;
  const int previous = num_threads();
  if (threads <= 0) threads = previous;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(threads); it != cache.end()) return it->second;
  constexpr int64_t n = 1024;  // large enough for the kernel's steady state, ~2 GFLOP a product
  std::vector<float> a(size_t(n * n)), b(size_t(n * n)), c(size_t(n * n));
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = float(i % 7) * 0.125f - 0.375f;
    b[i] = float(i % 5) * 0.25f - 0.5f;
  }
  set_num_threads(threads);
  double best = 1e30;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::min(best, s);  // the first one warms caches and threads
  }
  set_num_threads(previous);
  const double peak = 2.0 * double(n) * double(n) * double(n) / std::max(best, 1e-9);
  cache[threads] = peak;
  return peak;
}

FlopsReport flops_report(double flops_per_token, int64_t tokens_trained, double tokens_per_sec,
                         double peak_flops_per_sec) {
  FlopsReport r;
  r.flops_per_token = flops_per_token;
  r.total_flops = flops_per_token * double(tokens_trained);
  r.achieved_flops_per_sec = flops_per_token * tokens_per_sec;
  r.peak_flops_per_sec = peak_flops_per_sec;
  r.mfu = peak_flops_per_sec > 0 ? r.achieved_flops_per_sec / peak_flops_per_sec : 0.0;
  return r;
}

nlohmann::json to_json(const FlopsReport& r) {
  return {{"flops_per_token", r.flops_per_token},
          {"total_flops", r.total_flops},
          {"achieved_flops_per_sec", r.achieved_flops_per_sec},
          {"peak_flops_per_sec", r.peak_flops_per_sec},
          {"mfu", r.mfu}};
}

void FlopsMeter::on_train_end(Trainer&, const TrainSummary& s) {
  // After the last step, so the probe never competes with training; the
  // trainer left the thread count at the run's.
  report_ = flops_report(flops_per_token_, s.steps * tokens_per_step_, s.tokens_per_sec,
                         measured_peak_flops());
  if (!sink_) return;
  const nlohmann::json j = to_json(report_);  // items() only views it: keep it alive
  for (auto& [k, v] : j.items()) (*sink_)[k] = v;
}

}  // namespace bl
