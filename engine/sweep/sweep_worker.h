// One sweep worker: claims trials of a sweep from the store's queue and runs
// each through the engine's run launcher (run/launcher.h) until none is left.
// A trial claimed again after its worker died resumes the earlier attempt's
// run from its newest checkpoint (RunKind::kResume), or starts over when it
// has none. The local sweep runs N of these in N processes; one process can
// also run one directly (tests, `--workers 1`).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "run/launcher.h"
#include "sweep/sweep_spec.h"
#include "sweep/sweep_store.h"

namespace bl {

struct TrialOutcome {
  int64_t trial = 0;
  int64_t run_id = 0;
  RunStatus status = RunStatus::kFailed;
  std::optional<double> val_loss;
  double final_train_loss = 0;
  bool resumed = false;  // continued an earlier attempt's run
  std::string error;     // the launch or training error of a failed trial
};

struct WorkerOptions {
  std::string db_path;
  int64_t threads = 1;  // per run (train.threads)
  /// Trains a launched run (the CLI passes its signal-aware trainer); default run.train().
  std::function<TrainSummary(PreparedRun&)> train;
  /// Called after every trial.
  std::function<void(const TrialOutcome&)> on_trial;
};

/// Runs one claimed trial and records its end in the queue. A run that ends
/// completed or diverged makes the trial done; anything else leaves it failed
/// (the next resume of the sweep retries it).
TrialOutcome run_claimed_trial(const SweepSpec& spec, int64_t sweep_id, const TrialClaim& claim,
                               SweepStore& queue, const WorkerOptions& opt);

/// Claims and runs trials until none is pending, or a run was stopped (Ctrl-C,
/// SIGTERM). Returns the number of trials run.
int64_t run_sweep_worker(const SweepSpec& spec, int64_t sweep_id, const WorkerOptions& opt);

}  // namespace bl
