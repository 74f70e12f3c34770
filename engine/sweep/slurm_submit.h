// Writes a sweep's Slurm job array and collection job into a shared folder
// and submits them (sbatch --parsable; the collection job with
// --dependency=afterany on the array), or only writes them (dry run). One
// function for `blocklab-cli sweep SPEC --slurm` and the workbench's Sweep
// dialog, so both assemble the same scripts from the same options.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "sweep/slurm_script.h"
#include "sweep/sweep_spec.h"

namespace bl {

/// A Slurm option that cannot go into a job script (a partition of two
/// words, a shared folder with a space), or sbatch missing: the caller's
/// input, named, before anything is written or recorded.
struct SlurmSubmitError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct SlurmRequest {
  std::string cli;           // blocklab-cli as the compute nodes run it (made absolute)
  std::string db;            // the main store (the collection job imports into it)
  std::string shared_dir;    // "" = <db dir>/sweeps/<name>-<first 8 of the sweep UUID>
  int64_t max_parallel = 0;  // %M of --array (0: no limit)
  int64_t threads = 1;       // per task
  std::string partition;     // "" = the cluster's default
  std::string time_limit;    // "" = the partition's default
  std::string local_dir;     // "" = $TMPDIR or /tmp on the node
  bool dry_run = false;      // write the scripts only; the store is left alone
  std::string sbatch;        // "" = $BLOCKLAB_SBATCH, else sbatch from PATH
};

struct SlurmSubmission {
  SlurmOptions options;                // as written into the scripts
  std::string array_script;            // <shared>/sweep.sbatch
  std::string collect_script;          // <shared>/collect.sbatch
  std::optional<int64_t> sweep_id;     // the sweep's record in the main store (not on a dry run)
  std::string array_job, collect_job;  // job ids sbatch gave (empty on a dry run)
};

/// Checks the request, finds sbatch (unless a dry run), records the sweep as
/// 'submitted' in the main store (unless a dry run), writes spec.json,
/// sweep.sbatch and collect.sbatch (and logs/, results/) into the shared
/// folder, then submits the array and the collection job after it. Throws
/// SlurmSubmitError for a bad option or a missing sbatch, std::runtime_error
/// when sbatch refuses (its output quoted).
SlurmSubmission submit_slurm_sweep(const SweepSpec& spec, const SlurmRequest& req);

/// The sbatch that would be run: `sbatch` if it is an absolute or relative
/// path to an executable, else found in PATH; nullopt when there is none.
std::optional<std::string> find_executable(const std::string& name);

}  // namespace bl
