#include "sweep/sweep_worker.h"

#include "store/experiment_store.h"

namespace bl {

namespace {

// The spec of a trial's next attempt: a resume of the earlier run when that
// has a checkpoint, else the trial from the start.
RunSpec attempt_spec(const SweepSpec& spec, int64_t sweep_id, const TrialClaim& claim,
                     const WorkerOptions& opt, bool* resumed) {
  *resumed = false;
  if (claim.run_id) {
    ExperimentStore store(opt.db_path);
    const auto run = store.get_run(*claim.run_id);
    if (run && !store.checkpoints(run->id).empty()) {
      RunSpec r;
      r.kind = RunKind::kResume;
      r.parent_run_id = run->id;
      r.db_path = opt.db_path;
      r.train.threads = opt.threads;
      *resumed = true;
      return r;
    }
  }
  RunSpec r = trial_run_spec(spec, sweep_trial(spec, claim.trial), opt.db_path, sweep_id);
  r.train.threads = opt.threads;
  return r;
}

bool is_result(RunStatus s) {
  return s == RunStatus::kCompleted || s == RunStatus::kDiverged;
}

}  // namespace

TrialOutcome run_claimed_trial(const SweepSpec& spec, int64_t sweep_id, const TrialClaim& claim,
                               SweepStore& queue, const WorkerOptions& opt) {
  TrialOutcome out;
  out.trial = claim.trial;
  try {
    const RunSpec rs = attempt_spec(spec, sweep_id, claim, opt, &out.resumed);
    if (out.resumed) {
      // Killed after its final checkpoint: finished from it, nothing to train.
      const nlohmann::json done = finish_resume_if_done(rs);
      if (!done.is_null()) {
        out.run_id = *claim.run_id;
        out.status = RunStatus::kCompleted;
        if (done.contains("val_loss") && done["val_loss"].is_number())
          out.val_loss = done["val_loss"].get<double>();
        queue.finish_trial(sweep_id, claim.trial, true);
        return out;
      }
    }
    std::unique_ptr<PreparedRun> run = launch_run(rs);
    out.run_id = run->begin();
    queue.set_trial_run(sweep_id, claim.trial, out.run_id);
    const TrainSummary sum = opt.train ? opt.train(*run) : run->train();
    out.status = sum.status;
    out.val_loss = sum.val_loss;
    out.final_train_loss = sum.final_train_loss;
    out.error = sum.message;
  } catch (const std::exception& e) {
    out.status = RunStatus::kFailed;
    out.error = e.what();
  }
  queue.finish_trial(sweep_id, claim.trial, is_result(out.status));
  return out;
}

int64_t run_sweep_worker(const SweepSpec& spec, int64_t sweep_id, const WorkerOptions& opt) {
  SweepStore queue(opt.db_path);
  int64_t n = 0;
  while (auto claim = queue.claim(sweep_id)) {
    const TrialOutcome o = run_claimed_trial(spec, sweep_id, *claim, queue, opt);
    ++n;
    if (opt.on_trial) opt.on_trial(o);
    if (o.status == RunStatus::kStopped) break;  // the user asked to stop
  }
  return n;
}

}  // namespace bl
