#include "distributed.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "args.h"

namespace bl::cli {

std::unique_ptr<PreparedRun> launch_on_ranks(const RunSpec& spec, Communicator& comm) {
  if (comm.rank() == 0) {
    std::unique_ptr<PreparedRun> run;
    try {
      run = launch_run(spec);
    } catch (const std::exception& e) {
      const bool usage =
          dynamic_cast<const RunSpecError*>(&e) || dynamic_cast<const UsageError*>(&e);
      broadcast_string(comm, nlohmann::json{{"error", e.what()}, {"usage", usage}}.dump(), 0);
      throw;
    }
    broadcast_string(comm, run->rank_spec().dump(), 0);
    run->distribute(comm);
    return run;
  }
  const nlohmann::json j = nlohmann::json::parse(broadcast_string(comm, "", 0));
  if (j.contains("error")) throw RankExit(j.value("usage", false) ? 2 : 1);
  std::unique_ptr<PreparedRun> run = launch_rank(j, spec.distributed);
  run->distribute(comm);
  return run;
}

void AllreduceTimes::on_step_end(Trainer&, const StepMetrics& m) {
  for (const auto& [name, value] : m.extra)
    if (name == "allreduce_ms") ms_.push_back(value);
}

double AllreduceTimes::median_ms() const {
  if (ms_.size() < 2) return ms_.empty() ? 0.0 : ms_[0];
  std::vector<double> v(ms_.begin() + 1, ms_.end());
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace bl::cli
