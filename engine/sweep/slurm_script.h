// The Slurm side of a sweep: a job array with one task per trial
// (sbatch --array=0-K%M; task SLURM_ARRAY_TASK_ID runs trial
// SLURM_ARRAY_TASK_ID through `blocklab-cli sweep-task`, on a database on the
// node's local disk, and publishes a finished copy to the shared folder), and
// a collection job that runs after the whole array (afterany: also when tasks
// failed) and imports what was published into the main store.
#pragma once

#include <cstdint>
#include <string>

namespace bl {

struct SlurmOptions {
  std::string cli;         // absolute path of blocklab-cli on the compute nodes
  std::string spec_path;   // the resolved spec in the shared folder
  std::string shared_dir;  // shared folder: spec, scripts, logs, results/
  std::string main_db;     // the main store the collection job imports into
  std::string sweep_uuid;  // the sweep's UUID in the main store
  std::string sweep_name;
  int64_t trials = 0;        // array indices 0..trials-1
  int64_t max_parallel = 0;  // %M (0: no limit)
  int64_t threads = 1;       // per task: --cpus-per-task and train.threads
  std::string partition;     // "" = the cluster's default
  std::string time_limit;    // --time ("" = the partition's default)
  std::string local_dir;     // node-local directory for task databases ("" = $TMPDIR or /tmp)
};

/// The array job script (sweep.sbatch).
std::string slurm_array_script(const SlurmOptions& o);
/// The collection job script (collect.sbatch).
std::string slurm_collect_script(const SlurmOptions& o);
/// A word quoted for bash ('...' with embedded quotes escaped).
std::string shell_quote(const std::string& s);

}  // namespace bl
