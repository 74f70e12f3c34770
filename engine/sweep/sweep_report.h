// What a sweep has produced, trial by trial, from its runs in the store: the
// same view for a local sweep (runs claimed from the trial queue) and a Slurm
// sweep (runs imported from the tasks' published databases). A trial counts
// one run: the best-ranked of its attempts (completed, then diverged, ...;
// among equals the newest), so a retried or re-queued trial is not counted twice.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "store/experiment_store.h"
#include "sweep/sweep_store.h"

namespace bl {

struct TrialResult {
  int64_t trial = 0;
  nlohmann::json params;           // what the trial varies (sweep_trial().params)
  std::optional<int64_t> run_id;   // the run counted for it
  std::vector<int64_t> attempts;   // every run of the trial, oldest first
  std::string status = "not run";  // the counted run's status, or "not run"
  std::optional<double> val_loss;  // its best validation loss
  bool has_result() const { return status == "completed" || status == "diverged"; }
};

struct SweepReport {
  SweepRecord sweep;
  int64_t trials = 0;  // the spec's trial count
  std::vector<TrialResult> rows;
  std::optional<int64_t> best_trial;  // lowest val loss among completed trials
  int64_t with_result = 0, failed = 0, running = 0, not_run = 0;
  bool complete() const { return with_result == trials; }
};

/// The report of sweep `sweep_id` (std::runtime_error if there is none, or its
/// stored spec cannot be read).
SweepReport sweep_report(ExperimentStore& store, SweepStore& sweeps, int64_t sweep_id);

nlohmann::json to_json(const SweepReport& r);

/// Marks each 'submitted' sweep (a Slurm sweep, whose trials ran elsewhere)
/// completed once every trial has a result in this store; returns their ids.
std::vector<int64_t> complete_finished_sweeps(const std::string& db_path);

}  // namespace bl
