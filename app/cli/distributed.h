// `mpirun -np N blocklab-cli train ... --distributed`: every rank parses the
// same command line; rank 0 launches the run (store, checkpoints, output) and
// tells the others what to build, so a launch error is reported once, by rank
// 0, and ends every rank cleanly.
#pragma once

#include <memory>
#include <stdexcept>
#include <vector>

#include "dist/communicator.h"
#include "run/launcher.h"

namespace bl::cli {

/// Thrown on ranks > 0 when rank 0 could not launch the run (it prints why):
/// the process exits with `code` and says nothing more.
struct RankExit : std::runtime_error {
  explicit RankExit(int c) : std::runtime_error("rank 0 could not launch the run"), code(c) {}
  int code;
};

/// Rank 0: launch_run(spec), then the rank spec to every rank; the others:
/// launch_rank. Then every rank distribute()s. A launch error on rank 0 is
/// rethrown there and becomes RankExit on the others.
std::unique_ptr<PreparedRun> launch_on_ranks(const RunSpec& spec, Communicator& comm);

/// Collects each step's "allreduce_ms" (Trainer::reduce_across_ranks).
class AllreduceTimes : public Callback {
 public:
  explicit AllreduceTimes(int64_t steps) { ms_.reserve(size_t(steps > 0 ? steps : 0)); }
  void on_step_end(Trainer&, const StepMetrics& m) override;
  /// Median over the steps after the first (which sets up the buffers); 0 if none.
  double median_ms() const;

 private:
  std::vector<double> ms_;
};

}  // namespace bl::cli
