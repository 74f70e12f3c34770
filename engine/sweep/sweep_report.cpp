#include "sweep/sweep_report.h"

#include <map>
#include <stdexcept>

#include "sweep/sweep_spec.h"

namespace bl {
namespace {

// Which attempt of a trial counts: lower is better.
int rank_of(RunStatus s) {
  switch (s) {
    case RunStatus::kCompleted:
      return 0;
    case RunStatus::kDiverged:
      return 1;
    case RunStatus::kRunning:
      return 2;
    case RunStatus::kStopped:
      return 3;
    case RunStatus::kInterrupted:
      return 4;
    case RunStatus::kFailed:
      return 5;
  }
  return 6;
}

std::optional<double> best_val_loss(const RunRecord& r) {
  if (!r.summary.is_object()) return std::nullopt;
  for (const char* k : {"best_val_loss", "val_loss"})
    if (r.summary.contains(k) && r.summary[k].is_number()) return r.summary[k].get<double>();
  return std::nullopt;
}

}  // namespace

SweepReport sweep_report(ExperimentStore& store, SweepStore& sweeps, int64_t sweep_id) {
  SweepReport rep;
  const auto rec = sweeps.get(sweep_id);
  if (!rec) throw std::runtime_error("no sweep with id " + std::to_string(sweep_id));
  rep.sweep = *rec;
  const nlohmann::json j = nlohmann::json::parse(rec->spec, nullptr, false);
  if (j.is_discarded())
    throw std::runtime_error("sweep " + std::to_string(sweep_id) + ": its stored spec is not JSON");
  const SweepSpec spec = parse_sweep_spec(j, "sweep " + std::to_string(sweep_id), "/");
  rep.trials = spec.trial_count();
  rep.rows.resize(size_t(rep.trials));
  for (int64_t i = 0; i < rep.trials; ++i) {
    rep.rows[size_t(i)].trial = i;
    rep.rows[size_t(i)].params = sweep_trial(spec, i).params;
  }
  RunFilter f;
  f.sweep_id = sweep_id;
  f.newest_first = false;
  std::map<int64_t, RunStatus> counted;  // trial -> status of the counted run
  for (const RunRecord& r : store.list_runs(f)) {
    if (!r.sweep_trial || *r.sweep_trial < 0 || *r.sweep_trial >= rep.trials) continue;
    TrialResult& t = rep.rows[size_t(*r.sweep_trial)];
    t.attempts.push_back(r.id);
    const auto it = counted.find(t.trial);
    if (it == counted.end() || rank_of(r.status) <= rank_of(it->second)) {
      counted[t.trial] = r.status;
      t.run_id = r.id;
      t.status = to_string(r.status);
      t.val_loss = best_val_loss(r);
    }
  }
  for (const TrialResult& t : rep.rows) {
    if (t.has_result()) {
      ++rep.with_result;
      if (t.status == "completed" && t.val_loss &&
          (!rep.best_trial || *t.val_loss < *rep.rows[size_t(*rep.best_trial)].val_loss))
        rep.best_trial = t.trial;
    } else if (t.status == "running") {
      ++rep.running;
    } else if (t.status == "not run") {
      ++rep.not_run;
    } else {
      ++rep.failed;  // stopped, interrupted or failed: retried on resume
    }
  }
  return rep;
}

nlohmann::json to_json(const SweepReport& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const TrialResult& t : r.rows)
    rows.push_back({{"trial", t.trial},
                    {"params", t.params},
                    {"run_id", t.run_id ? nlohmann::json(*t.run_id) : nlohmann::json()},
                    {"attempts", t.attempts},
                    {"status", t.status},
                    {"val_loss", t.val_loss ? nlohmann::json(*t.val_loss) : nlohmann::json()}});
  return {{"sweep_id", r.sweep.id},
          {"uuid", r.sweep.uuid},
          {"name", r.sweep.name},
          {"status", r.sweep.status},
          {"trials", r.trials},
          {"with_result", r.with_result},
          {"failed", r.failed},
          {"running", r.running},
          {"not_run", r.not_run},
          {"best_trial", r.best_trial ? nlohmann::json(*r.best_trial) : nlohmann::json()},
          {"rows", rows}};
}

std::vector<int64_t> complete_finished_sweeps(const std::string& db_path) {
  std::vector<int64_t> done;
  SweepStore sweeps(db_path);
  ExperimentStore store(db_path);
  for (const SweepRecord& s : sweeps.list()) {
    if (s.status != "submitted") continue;
    try {
      if (sweep_report(store, sweeps, s.id).complete()) {
        sweeps.set_status(s.id, "completed");
        done.push_back(s.id);
      }
    } catch (const std::exception&) {
      // A sweep whose stored spec this build cannot read keeps its status;
      // `sweep show` names the problem.
    }
  }
  return done;
}

}  // namespace bl
