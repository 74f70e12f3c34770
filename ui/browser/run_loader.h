// Reads a stored run's curves and exports metrics, from any ExperimentStore
// connection (the browser uses its read-only one).
#pragma once

#include <QString>
#include <cstdint>
#include <vector>

#include "plot/charts_panel.h"
#include "store/experiment_store.h"

namespace bl {

/// Steps with step > after_step whose loss, lr, grad norm, tokens/s and tokens
/// rows are all committed, plus the evaluations after after_step. Wall time is
/// relative to the run's start. Tolerates a batch committed mid-step. A full
/// load (after_step < 0) also sets flops_per_token (run_flops_per_token).
RunCurves load_run_curves(ExperimentStore& store, const RunRecord& run, int64_t after_step = -1);

/// Training FLOPs per token of a stored run: its summary's flops_per_token
/// (written at the end of training), else counted on its model config at its
/// seq_len (running or killed runs); 0 if neither is readable.
double run_flops_per_token(const RunRecord& run);

/// Writes every metric of `run_ids` as CSV rows
/// run_id,run_name,metric,step,wall_time,value. Throws on I/O or store errors.
void write_metrics_csv(ExperimentStore& store, const std::vector<int64_t>& run_ids,
                       const QString& path);

}  // namespace bl
