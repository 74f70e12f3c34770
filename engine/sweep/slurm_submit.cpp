#include "sweep/slurm_submit.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "store/experiment_store.h"
#include "sweep/sweep_store.h"

namespace bl {

namespace {

namespace fs = std::filesystem;

// Runs a command, returns its output; throws with that output on failure.
std::string run_capture(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("cannot run: " + cmd);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = pclose(p);
  if (st != 0)
    throw std::runtime_error(cmd + " failed (exit " +
                             std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : -1) + "): " + out);
  return out;
}

// sbatch --parsable prints "jobid" or "jobid;cluster".
std::string parse_job_id(const std::string& out, const std::string& cmd) {
  std::string line = out.substr(0, out.find('\n'));
  line = line.substr(0, line.find(';'));
  if (line.empty() || !std::all_of(line.begin(), line.end(), ::isdigit))
    throw std::runtime_error(cmd + " did not print a job id: " + out);
  return line;
}

void write_text(const fs::path& p, const std::string& text, bool executable) {
  std::ofstream f(p);
  f << text;
  f.close();
  if (!f) throw std::runtime_error(p.string() + ": cannot write");
  if (executable)
    fs::permissions(p, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                    fs::perm_options::add);
}

bool is_executable_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

}  // namespace

std::optional<std::string> find_executable(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos)
    return is_executable_file(name) ? std::optional<std::string>(name) : std::nullopt;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = dirs.substr(start, end - start);
    const fs::path cand = fs::path(dir.empty() ? "." : dir) / name;
    if (is_executable_file(cand)) return cand.string();
    start = end + 1;
  }
  return std::nullopt;
}

SlurmSubmission submit_slurm_sweep(const SweepSpec& spec, const SlurmRequest& req) {
  SlurmSubmission out;
  SlurmOptions& o = out.options;
  if (req.cli.empty()) throw SlurmSubmitError("the path of blocklab-cli for the tasks is empty");
  o.cli = fs::absolute(req.cli).lexically_normal().string();
  o.main_db = fs::absolute(req.db).string();
  o.sweep_name = spec.name;
  o.trials = spec.trial_count();
  if (req.max_parallel < 0)
    throw SlurmSubmitError("the array's concurrency (%M) must be >= 0 (0: no limit), got " +
                           std::to_string(req.max_parallel));
  if (req.threads < 1)
    throw SlurmSubmitError("threads per task must be >= 1, got " + std::to_string(req.threads));
  o.max_parallel = req.max_parallel;
  o.threads = req.threads;
  o.partition = req.partition;
  o.time_limit = req.time_limit;
  o.local_dir = req.local_dir;
  for (const std::string* v : {&o.partition, &o.time_limit})
    if (v->find_first_of(" \t\n'\"") != std::string::npos)
      throw SlurmSubmitError("--partition and --time take one word, got '" + *v + "'");
  // sbatch is looked for before anything is written or recorded: without
  // Slurm the sweep is refused whole, with what to do instead.
  std::string sbatch;
  if (!req.dry_run) {
    const char* env = std::getenv("BLOCKLAB_SBATCH");
    const std::string want = !req.sbatch.empty() ? req.sbatch : env && *env ? env : "sbatch";
    const auto found = find_executable(want);
    if (!found)
      throw SlurmSubmitError(
          "cannot submit: " + want +
          " is not found (Slurm's sbatch is not installed on this machine or not in PATH); write "
          "the scripts only (dry run) and submit them with sbatch on the cluster");
    sbatch = *found;
  }
  // The UUID comes first: the default shared folder is named after it, and the
  // folder is checked before the sweep is recorded.
  o.sweep_uuid = new_uuid();
  const fs::path shared =
      fs::absolute(!req.shared_dir.empty() ? fs::path(req.shared_dir)
                                           : fs::absolute(req.db).parent_path() / "sweeps" /
                                                 (spec.name + "-" + o.sweep_uuid.substr(0, 8)));
  if (shared.string().find_first_of(" \t\n'\"%") != std::string::npos)
    throw SlurmSubmitError("--shared " + shared.string() +
                           ": the shared folder's path must not contain spaces, quotes or % (it "
                           "is written into #SBATCH lines)");
  // The sweep's record exists before any task runs (a dry run leaves the store alone).
  if (!req.dry_run) {
    SweepStore store(req.db);
    out.sweep_id = store.create(spec.name, spec.source.dump(), o.sweep_uuid, "submitted").id;
  }
  o.shared_dir = shared.string();
  std::error_code ec;
  for (const char* sub : {"logs", "results"}) fs::create_directories(shared / sub, ec);
  if (ec) throw std::runtime_error(shared.string() + ": cannot create: " + ec.message());
  o.spec_path = (shared / "spec.json").string();
  out.array_script = (shared / "sweep.sbatch").string();
  out.collect_script = (shared / "collect.sbatch").string();
  write_text(o.spec_path, spec.source.dump(2) + "\n", false);
  write_text(out.array_script, slurm_array_script(o), true);
  write_text(out.collect_script, slurm_collect_script(o), true);
  if (req.dry_run) return out;
  const std::string c1 = shell_quote(sbatch) + " --parsable " + shell_quote(out.array_script);
  out.array_job = parse_job_id(run_capture(c1), c1);
  const std::string c2 = shell_quote(sbatch) +
                         " --parsable --dependency=afterany:" + out.array_job + " " +
                         shell_quote(out.collect_script);
  out.collect_job = parse_job_id(run_capture(c2), c2);
  return out;
}

}  // namespace bl
