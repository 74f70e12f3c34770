#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "setup.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace bl::cli {

namespace {

/// One live status line (step, loss, tok/s, ETA), redrawn in place on a
/// terminal, printed every log_interval steps otherwise.
class ProgressPrinter : public Callback {
 public:
  ProgressPrinter(int64_t max_steps, int64_t log_interval, bool quiet)
      : max_steps_(max_steps), interval_(log_interval > 0 ? log_interval : 10), quiet_(quiet),
        tty_(isatty(fileno(stderr))) {}

  void on_step_end(Trainer& t, const StepMetrics& m) override {
    ema_tps_ = ema_tps_ == 0 ? m.tokens_per_sec : 0.9 * ema_tps_ + 0.1 * m.tokens_per_sec;
    if (quiet_) return;
    const int64_t done = m.step + 1;
    const double eta = ema_tps_ > 0 ? double(max_steps_ - done) * double(t.tokens_per_step()) / ema_tps_ : 0;
    char line[256];
    std::snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.2f | %.0f tok/s | ETA %s",
                  (long long)done, (long long)max_steps_, m.loss, m.learning_rate, m.grad_norm, ema_tps_,
                  format_eta(eta).c_str());
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line);
      if (m.eval_loss) std::fprintf(stderr, "\r\033[K%s | eval_loss %.4f\n", line, *m.eval_loss);
    } else if (done % interval_ == 0 || done == max_steps_ || m.eval_loss) {
      std::fprintf(stderr, "%s", line);
      if (m.eval_loss) std::fprintf(stderr, " | eval_loss %.4f", *m.eval_loss);
      std::fprintf(stderr, "\n");
    }
    std::fflush(stderr);
  }
  void on_train_end(Trainer&, const TrainSummary&) override {
    if (tty_ && !quiet_) std::fprintf(stderr, "\n");
  }

 private:
  static std::string format_eta(double s) {
    char buf[32];
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60)
      std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else
      std::snprintf(buf, sizeof buf, "%ds", int(s));
    return buf;
  }
  int64_t max_steps_, interval_;
  bool quiet_, tty_;
  double ema_tps_ = 0;
};

Trainer* g_trainer = nullptr;
void on_sigint(int) {
  // First Ctrl-C: finish the current step and stop cleanly; second: default action.
  if (g_trainer) g_trainer->request_stop("interrupted by signal");
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

}  // namespace

int train_command(const std::vector<std::string>& argv) {
  auto value_opts = run_value_options();
  value_opts.insert("out");
  Args args(argv, value_opts, {"json", "quiet"});
  if (!args.positional().empty()) throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  RunSetup s = make_run_setup(args);
  const TrainConfig& tc = s.preset.train;
  const bool quiet = args.flag("quiet");
  Trainer trainer(*s.model, tc, *s.data);
  ProgressPrinter progress(tc.max_steps, tc.log_interval, quiet);
  trainer.add_callback(&progress);
  if (!quiet)
    std::fprintf(stderr, "blocklab: %s | %lld params | %s tokenizer (vocab %lld) | data %s (%lld train / %lld val tokens) | %lld steps x %lld tokens\n",
                 s.preset_name.empty() ? "config" : s.preset_name.c_str(),
                 (long long)s.model->num_parameters(), s.tokenizer->name().c_str(),
                 (long long)s.tokenizer->vocab_size(), s.data_path.c_str(),
                 (long long)s.data->train_size(), (long long)s.data->val_size(),
                 (long long)tc.max_steps, (long long)trainer.tokens_per_step());
  g_trainer = &trainer;
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  TrainSummary sum = trainer.train();
  g_trainer = nullptr;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  std::printf("%s after %lld steps: train loss %.4f (mean of last 10)", to_string(sum.status),
              (long long)sum.steps, sum.final_train_loss);
  if (sum.val_loss) std::printf(", val loss %.4f", *sum.val_loss);
  std::printf(", %.0f tok/s, median step %.1f ms, %.1f s\n", sum.tokens_per_sec, sum.median_step_ms,
              sum.elapsed_s);
  if (!sum.message.empty()) std::printf("%s\n", sum.message.c_str());
  if (auto out = args.get("out")) {
    save_checkpoint(*out, *s.model, tc, *s.tokenizer, &trainer);
    std::printf("checkpoint saved to %s (sample with: blocklab-cli sample --run %s)\n", out->c_str(),
                out->c_str());
  }
  if (args.flag("json")) {
    nlohmann::json j = {{"status", to_string(sum.status)},
                        {"steps", sum.steps},
                        {"final_train_loss", sum.final_train_loss},
                        {"val_loss", sum.val_loss ? nlohmann::json(*sum.val_loss) : nlohmann::json()},
                        {"best_val_loss", sum.best_val_loss ? nlohmann::json(*sum.best_val_loss) : nlohmann::json()},
                        {"tokens_per_sec", sum.tokens_per_sec},
                        {"median_step_ms", sum.median_step_ms},
                        {"elapsed_s", sum.elapsed_s},
                        {"params", sum.params},
                        {"flops_per_token", s.model->flops_per_token(tc.seq_len)},
                        {"preset", s.preset_name},
                        {"seed", tc.seed},
                        {"threads", tc.threads}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return sum.status == RunStatus::kCompleted || sum.status == RunStatus::kStopped ? 0 : 3;
}

}  // namespace bl::cli
