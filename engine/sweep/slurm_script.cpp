#include "sweep/slurm_script.h"

#include <cctype>
#include <stdexcept>

namespace bl {

namespace {

std::string job_name(const std::string& prefix, const std::string& sweep) {
  std::string n = prefix + sweep;
  for (char& c : n)  // #SBATCH lines are not shell-parsed: keep the name one plain word
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return n;
}

std::string common_header(const SlurmOptions& o) {
  std::string s;
  if (!o.partition.empty()) s += "#SBATCH --partition=" + o.partition + "\n";
  if (!o.time_limit.empty()) s += "#SBATCH --time=" + o.time_limit + "\n";
  return s;
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string slurm_array_script(const SlurmOptions& o) {
  if (o.trials < 1) throw std::invalid_argument("a Slurm sweep needs at least one trial");
  std::string array = "0-" + std::to_string(o.trials - 1);
  if (o.max_parallel > 0) array += "%" + std::to_string(o.max_parallel);
  const std::string local = o.local_dir.empty() ? "${TMPDIR:-/tmp}" : shell_quote(o.local_dir);
  std::string s = "#!/bin/bash\n";
  s += "#SBATCH --job-name=" + job_name("blocklab-sweep-", o.sweep_name) + "\n";
  s += "#SBATCH --array=" + array + "\n";
  s += "#SBATCH --cpus-per-task=" + std::to_string(o.threads) + "\n";
  s += "#SBATCH --output=" + o.shared_dir + "/logs/task-%A_%a.out\n";
  s += common_header(o);
  s += "# Blocklab sweep '" + o.sweep_name + "' (" + std::to_string(o.trials) +
       " trials): task i runs trial i.\n"
       "# Each task writes its own database on node-local disk (SQLite's WAL needs one host)\n"
       "# and publishes a finished copy to results/ in the shared folder.\n"
       "set -euo pipefail\n";
  s += "work=" + local + "/blocklab-sweep-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}\n";
  s += "rm -rf \"$work\" && mkdir -p \"$work\"\n"
       "trap 'rm -rf \"$work\"' EXIT\n";
  s += shell_quote(o.cli) + " sweep-task " + shell_quote(o.spec_path) +
       " --index \"$SLURM_ARRAY_TASK_ID\" --sweep-uuid " + shell_quote(o.sweep_uuid) +
       " --threads " + std::to_string(o.threads) + " --db \"$work/experiments.db\" --publish " +
       shell_quote(o.shared_dir + "/results") + "\n";
  return s;
}

std::string slurm_collect_script(const SlurmOptions& o) {
  std::string s = "#!/bin/bash\n";
  s += "#SBATCH --job-name=" + job_name("blocklab-collect-", o.sweep_name) + "\n";
  s += "#SBATCH --cpus-per-task=1\n";
  s += "#SBATCH --output=" + o.shared_dir + "/logs/collect-%j.out\n";
  s += common_header(o);
  s += "# Runs after every task of the sweep's array ended (afterany): imports the\n"
       "# published task databases into the main store. Importing again is a no-op.\n"
       "set -euo pipefail\n";
  s += shell_quote(o.cli) + " runs import " + shell_quote(o.shared_dir + "/results") + " --db " +
       shell_quote(o.main_db) + "\n";
  return s;
}

}  // namespace bl
