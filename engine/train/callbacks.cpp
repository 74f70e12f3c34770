#include "train/callbacks.h"

#include "train/trainer.h"

namespace bl {

const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::kRunning: return "running";
    case RunStatus::kCompleted: return "completed";
    case RunStatus::kStopped: return "stopped";
    case RunStatus::kDiverged: return "diverged";
    case RunStatus::kFailed: return "failed";
    case RunStatus::kInterrupted: return "interrupted";
  }
  return "unknown";
}

void MetricsLogger::on_step_end(Trainer&, const StepMetrics& m) {
  if (interval_ <= 0 || (m.step % interval_ != 0)) return;
  std::fprintf(out_, "step %6lld | loss %.4f | lr %.2e | gnorm %.3f | %.1f ms | %.0f tok/s\n",
               (long long)m.step, m.loss, m.learning_rate, m.grad_norm, m.step_time_ms,
               m.tokens_per_sec);
  std::fflush(out_);
}

void MetricsLogger::on_eval_end(Trainer&, int64_t step, double eval_loss) {
  std::fprintf(out_, "step %6lld | eval_loss %.4f\n", (long long)step, eval_loss);
  std::fflush(out_);
}

void EarlyStopping::on_eval_end(Trainer& t, int64_t step, double eval_loss) {
  if (eval_loss < best_ - min_delta_) {
    best_ = eval_loss;
    waited_ = 0;
    return;
  }
  if (++waited_ >= patience_)
    t.request_stop("early stopping: eval_loss has not improved by " + std::to_string(min_delta_) +
                   " for " + std::to_string(patience_) + " evaluations");
}

void ThroughputMonitor::on_step_end(Trainer&, const StepMetrics& m) {
  times_ms_.push_back(m.step_time_ms);
  while (int64_t(times_ms_.size()) > std::max<int64_t>(interval_, 1)) times_ms_.pop_front();
  double total = 0;
  for (double t : times_ms_) total += t;
  steps_per_sec_ = total > 0 ? 1000.0 * double(times_ms_.size()) / total : 0;
  tokens_per_sec_ = steps_per_sec_ * double(tokens_per_step_);
  if (out_ && interval_ > 0 && m.step % interval_ == 0) {
    std::fprintf(out_, "throughput | %.2f steps/s", steps_per_sec_);
    if (tokens_per_step_ > 0) std::fprintf(out_, " | %.0f tok/s", tokens_per_sec_);
    std::fprintf(out_, "\n");
  }
}

}  // namespace bl
