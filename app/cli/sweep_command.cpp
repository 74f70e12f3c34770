// blocklab-cli sweep: run every trial of a sweep spec, locally in N worker
// processes (resumable), or as a Slurm job array plus a collection job.
// Hidden helpers: sweep-worker (one local worker process) and sweep-task (one
// Slurm array task). The engine side is engine/sweep/.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.h"
#include "setup.h"
#include "sweep/run_transfer.h"
#include "sweep/slurm_script.h"
#include "sweep/slurm_submit.h"
#include "sweep/sweep_report.h"
#include "sweep/sweep_spec.h"
#include "sweep/sweep_store.h"
#include "sweep/sweep_worker.h"

namespace bl::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* kSweepUsage =
    "usage: blocklab-cli sweep SPEC.json [--workers N] [--threads T] [--db FILE] [--new] [--json]\n"
    "       blocklab-cli sweep --resume SWEEP_ID [--workers N] [--threads T] [--db FILE]\n"
    "       blocklab-cli sweep list [--json] [--db FILE]\n"
    "       blocklab-cli sweep show SWEEP_ID [--json] [--db FILE]\n"
    "       blocklab-cli sweep SPEC.json --slurm [--dry-run] [--shared DIR] [--max-parallel M]\n"
    "                          [--partition P] [--time LIMIT] [--threads T] [--local-dir DIR] "
    "[--db FILE]\n"
    "Local: N worker processes (default 1) claim trials from the database; threads per run\n"
    "default to max(1, hardware threads / N). Re-running the same SPEC (or --resume ID)\n"
    "continues a killed sweep with the trials not completed; --new starts a separate sweep.\n"
    "Slurm: writes sweep.sbatch (a job array, one task per trial) and collect.sbatch (imports\n"
    "the tasks' published databases into --db after the array) in the shared folder and\n"
    "submits both with sbatch (--dry-run: only writes them).\n"
    "list: every sweep with its status and trials with a result; show: each trial's values,\n"
    "the run counted for it (the best of its attempts), its status and best val loss, and\n"
    "the best trial.\n";

std::string self_exe() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    throw std::runtime_error("cannot find this program's path (/proc/self/exe): " + ec.message());
  return p.string();
}

std::string fmt_loss(std::optional<double> v) {
  if (!v) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", *v);
  return b;
}

void print_outcome(const SweepSpec& spec, const TrialOutcome& o) {
  const SweepTrial t = sweep_trial(spec, o.trial);
  std::printf("trial %lld%s: %s", (long long)o.trial, o.resumed ? " (resumed)" : "",
              run_status_name(o.status));
  if (o.run_id) std::printf(" run %lld", (long long)o.run_id);
  std::printf(" | val loss %s | %s", fmt_loss(o.val_loss).c_str(), t.params.dump().c_str());
  if (o.status == RunStatus::kFailed && !o.error.empty()) std::printf(" | %s", o.error.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

// Pids of the running workers, for the signal handler to pass a stop on.
std::array<pid_t, 4096> g_workers{};
volatile sig_atomic_t g_nworkers = 0;

void forward_stop(int sig) {
  for (sig_atomic_t i = 0; i < g_nworkers; ++i)
    if (g_workers[size_t(i)] > 0) kill(g_workers[size_t(i)], sig == SIGINT ? SIGTERM : sig);
}

SweepSpec spec_of_record(const SweepRecord& r) {
  const json j = json::parse(r.spec, nullptr, false);
  if (j.is_discarded())
    throw std::runtime_error("sweep " + std::to_string(r.id) + ": its stored spec is not JSON");
  // Stored specs have absolute paths already.
  return parse_sweep_spec(j, "sweep " + std::to_string(r.id), "/");
}

int64_t default_threads(int64_t workers) {
  const int64_t hw = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  return std::max<int64_t>(1, hw / std::max<int64_t>(1, workers));
}

// ------------------------------------------------------------------ local
int run_local(const Args& args, const std::string& db) {
  std::optional<SweepSpec> spec;
  std::optional<SweepRecord> rec;
  const int64_t workers_wanted = args.get_int("workers", 1).value_or(1);
  if (workers_wanted > int64_t(g_workers.size()))
    throw UsageError("--workers must be <= " + std::to_string(g_workers.size()));
  SweepStore store(db);
  if (auto id = args.get("resume")) {
    if (!args.positional().empty())
      throw UsageError("give SPEC.json or --resume SWEEP_ID, not both");
    rec = store.get(parse_run_id(*id, "--resume"));
    if (!rec) throw std::runtime_error(db + ": no sweep with id " + *id);
    spec = spec_of_record(*rec);
  } else {
    if (args.positional().size() != 1) throw UsageError("sweep needs one SPEC.json");
    spec = load_sweep_spec(args.positional()[0]);
  }
  check_sweep_trials(*spec);
  const std::string spec_text = spec->source.dump();
  if (!rec && !args.flag("new")) rec = store.find_by_spec(spec_text);
  if (rec) {
    std::printf("sweep %lld '%s': continuing (same spec; --new starts a separate sweep)\n",
                (long long)rec->id, rec->name.c_str());
  } else {
    rec = store.create(spec->name, spec_text, "", "running");
    std::printf("sweep %lld '%s': %lld trials", (long long)rec->id, rec->name.c_str(),
                (long long)spec->trial_count());
    if (spec->trial_count() < spec->full_count())
      std::printf(" (budget %lld of %lld)", (long long)spec->trial_count(),
                  (long long)spec->full_count());
    std::printf(", recorded in %s\n", db.c_str());
  }
  const int64_t sweep_id = rec->id;
  store.ensure_trials(sweep_id, spec->trial_count());
  const int64_t requeued = store.requeue_unfinished(sweep_id);
  TrialCounts c = store.counts(sweep_id);
  if (requeued > 0)
    std::printf("%lld trials to retry (their worker ended or they failed)\n", (long long)requeued);
  if (c.pending == 0 && c.running == 0) {
    store.set_status(sweep_id, "completed");
    std::printf("sweep %lld is complete: %lld trials done\n", (long long)sweep_id,
                (long long)c.done);
  } else if (c.pending > 0) {
    const int64_t workers = std::min(workers_wanted, c.pending);
    const int64_t threads = args.get_int("threads", 1).value_or(default_threads(workers));
    std::printf("%lld trials pending, %lld done; %lld workers x %lld threads\n",
                (long long)c.pending, (long long)c.done, (long long)workers, (long long)threads);
    std::fflush(stdout);
    const std::string exe = self_exe();
    // Workers stop cleanly on SIGTERM; the parent passes a Ctrl-C on and waits.
    struct sigaction sa {};
    sa.sa_handler = forward_stop;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int {
    }, old_term{};
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    for (int64_t w = 0; w < workers; ++w) {
      const std::vector<std::string> argv_s = {
          exe,         "sweep-worker",         "--sweep", std::to_string(sweep_id), "--db", db,
          "--threads", std::to_string(threads)};
      const pid_t pid = fork();
      if (pid < 0)
        throw std::runtime_error(std::string("cannot start a worker: ") + strerror(errno));
      if (pid == 0) {
        signal(SIGINT, SIG_IGN);  // the parent turns Ctrl-C into one SIGTERM per worker
        signal(SIGTERM, SIG_DFL);
        std::vector<char*> av;
        for (const std::string& a : argv_s) av.push_back(const_cast<char*>(a.c_str()));
        av.push_back(nullptr);
        execv(exe.c_str(), av.data());
        std::fprintf(stderr, "cannot run %s: %s\n", exe.c_str(), strerror(errno));
        _exit(127);
      }
      g_workers[size_t(w)] = pid;
      g_nworkers = sig_atomic_t(w + 1);
    }
    int failed_workers = 0;
    for (int64_t w = 0; w < workers; ++w) {
      int status = 0;
      while (waitpid(g_workers[size_t(w)], &status, 0) < 0 && errno == EINTR) {
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed_workers;
    }
    g_nworkers = 0;
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    if (failed_workers > 0)
      std::fprintf(stderr, "warning: %d worker(s) ended with an error\n", failed_workers);
    c = store.counts(sweep_id);
    if (c.pending == 0 && c.running == 0 && c.failed == 0) store.set_status(sweep_id, "completed");
  } else {
    std::printf("%lld trials are running in other worker processes\n", (long long)c.running);
  }
  c = store.counts(sweep_id);
  std::printf("sweep %lld: %lld of %lld trials done, %lld failed, %lld not run",
              (long long)sweep_id, (long long)c.done, (long long)c.total(), (long long)c.failed,
              (long long)(c.pending + c.running));
  if (c.done < c.total())
    std::printf(" (continue with: blocklab-cli sweep --resume %lld --db %s)", (long long)sweep_id,
                db.c_str());
  std::printf("\n(runs: blocklab-cli runs list --sweep %lld --db %s)\n", (long long)sweep_id,
              db.c_str());
  if (args.flag("json"))
    std::printf("%s\n", json{{"sweep_id", sweep_id},
                             {"uuid", rec->uuid},
                             {"trials", c.total()},
                             {"done", c.done},
                             {"failed", c.failed},
                             {"not_run", c.pending + c.running}}
                            .dump()
                            .c_str());
  return c.done == c.total() ? 0 : 3;
}

// ------------------------------------------------------------------ list / show
int list_sweeps(const Args& args, const std::string& db) {
  if (args.positional().size() != 1) throw UsageError("sweep list takes no argument");
  auto store = ExperimentStore::open_readonly(db);
  SweepStore sweeps(db);
  json out = json::array();
  for (const SweepRecord& s : sweeps.list()) {
    json row = {{"sweep_id", s.id}, {"uuid", s.uuid}, {"name", s.name}, {"status", s.status}};
    try {
      const SweepReport r = sweep_report(store, sweeps, s.id);
      row["trials"] = r.trials;
      row["with_result"] = r.with_result;
      row["best_trial"] = r.best_trial ? json(*r.best_trial) : json();
      row["best_val_loss"] = r.best_trial ? json(*r.rows[size_t(*r.best_trial)].val_loss) : json();
    } catch (const std::exception& e) {
      row["error"] = e.what();
    }
    out.push_back(row);
  }
  if (args.flag("json")) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  if (out.empty()) std::printf("no sweeps in %s\n", db.c_str());
  for (const json& r : out) {
    std::printf("%4lld  %-24s %-10s", (long long)r["sweep_id"].get<int64_t>(),
                r["name"].get<std::string>().c_str(), r["status"].get<std::string>().c_str());
    if (r.contains("error"))
      std::printf("  %s\n", r["error"].get<std::string>().c_str());
    else
      std::printf("  %lld/%lld trials with a result  best val loss %s\n",
                  (long long)r["with_result"].get<int64_t>(), (long long)r["trials"].get<int64_t>(),
                  r["best_val_loss"].is_number()
                      ? fmt_loss(r["best_val_loss"].get<double>()).c_str()
                      : "-");
  }
  return 0;
}

int show_sweep(const Args& args, const std::string& db) {
  if (args.positional().size() != 2) throw UsageError("sweep show needs one SWEEP_ID");
  const int64_t id = parse_run_id(args.positional()[1], "sweep show");
  auto store = ExperimentStore::open_readonly(db);
  SweepStore sweeps(db);
  const SweepReport r = sweep_report(store, sweeps, id);
  if (args.flag("json")) {
    std::printf("%s\n", to_json(r).dump().c_str());
    return 0;
  }
  std::printf(
      "sweep %lld '%s' (%s): %lld trials, %lld with a result, %lld failed or stopped, "
      "%lld running, %lld not run\n",
      (long long)r.sweep.id, r.sweep.name.c_str(), r.sweep.status.c_str(), (long long)r.trials,
      (long long)r.with_result, (long long)r.failed, (long long)r.running, (long long)r.not_run);
  std::printf("%5s  %-6s %-11s %-9s %s\n", "trial", "run", "status", "val loss", "values");
  for (const TrialResult& t : r.rows) {
    std::string run = t.run_id ? std::to_string(*t.run_id) : "-";
    if (t.attempts.size() > 1) run += " (" + std::to_string(t.attempts.size()) + " tries)";
    std::printf("%5lld%s %-6s %-11s %-9s %s\n", (long long)t.trial,
                r.best_trial == t.trial ? "*" : " ", run.c_str(), t.status.c_str(),
                fmt_loss(t.val_loss).c_str(), t.params.dump().c_str());
  }
  if (r.best_trial)
    std::printf("best: trial %lld (* above), run %lld, val loss %s\n", (long long)*r.best_trial,
                (long long)*r.rows[size_t(*r.best_trial)].run_id,
                fmt_loss(r.rows[size_t(*r.best_trial)].val_loss).c_str());
  return 0;
}

// ------------------------------------------------------------------ slurm
int run_slurm(const Args& args, const std::string& db) {
  if (args.positional().size() != 1) throw UsageError("sweep --slurm needs one SPEC.json");
  if (args.get("workers") || args.get("resume"))
    throw UsageError("--workers and --resume are for a local sweep; Slurm runs one task per trial");
  const SweepSpec spec = load_sweep_spec(args.positional()[0]);
  check_sweep_trials(spec);
  SlurmRequest req;
  req.cli = self_exe();
  req.db = db;
  req.shared_dir = args.get("shared").value_or("");
  req.max_parallel = args.get_int("max-parallel", 1).value_or(0);
  req.threads = args.get_int("threads", 1).value_or(1);
  req.partition = args.get("partition").value_or("");
  req.time_limit = args.get("time").value_or("");
  req.local_dir = args.get("local-dir").value_or("");
  req.dry_run = args.flag("dry-run");
  SlurmSubmission sub;
  try {
    sub = submit_slurm_sweep(spec, req);
  } catch (const SlurmSubmitError& e) {
    throw UsageError(e.what());
  }
  const SlurmOptions& o = sub.options;
  std::printf("sweep '%s': %lld trials -> %s (array 0-%lld), %s\n", spec.name.c_str(),
              (long long)o.trials, sub.array_script.c_str(), (long long)(o.trials - 1),
              sub.collect_script.c_str());
  if (req.dry_run) {
    std::printf(
        "dry run: nothing submitted (submit with: sbatch %s, then sbatch "
        "--dependency=afterany:<job id> %s)\n",
        sub.array_script.c_str(), sub.collect_script.c_str());
    return 0;
  }
  std::printf("submitted: array job %s, collection job %s (imports into %s when the array ends)\n",
              sub.array_job.c_str(), sub.collect_job.c_str(), o.main_db.c_str());
  if (args.flag("json"))
    std::printf("%s\n", json{{"sweep_id", *sub.sweep_id},
                             {"uuid", o.sweep_uuid},
                             {"trials", o.trials},
                             {"shared", o.shared_dir},
                             {"array_job", sub.array_job},
                             {"collect_job", sub.collect_job}}
                            .dump()
                            .c_str());
  return 0;
}

}  // namespace

int sweep_command(const std::vector<std::string>& argv) {
  Args args(argv,
            {"workers", "threads", "db", "resume", "shared", "max-parallel", "partition", "time",
             "local-dir"},
            {"slurm", "dry-run", "new", "json", "help"});
  if (args.flag("help")) {
    std::fputs(kSweepUsage, stdout);
    return 0;
  }
  if (args.positional().empty() && !args.get("resume")) {
    std::fputs(kSweepUsage, stderr);
    return 2;
  }
  const std::string db = args.get("db").value_or(default_db_path());
  // "list" and "show" are subcommands unless a spec file of that name exists
  // (./list always names the file).
  if (!args.positional().empty() && !fs::exists(args.positional()[0])) {
    if (args.positional()[0] == "list") return list_sweeps(args, db);
    if (args.positional()[0] == "show") return show_sweep(args, db);
  }
  if (args.flag("slurm")) return run_slurm(args, db);
  for (const char* o : {"shared", "max-parallel", "partition", "time", "local-dir"})
    if (args.get(o)) throw UsageError(std::string("--") + o + " applies to --slurm only");
  if (args.flag("dry-run")) throw UsageError("--dry-run applies to --slurm only");
  return run_local(args, db);
}

int sweep_worker_command(const std::vector<std::string>& argv) {
  Args args(argv, {"sweep", "db", "threads"}, {});
  if (!args.get("sweep") || !args.get("db"))
    throw UsageError("sweep-worker needs --sweep ID --db FILE");
  const std::string db = *args.get("db");
  const int64_t sweep_id = parse_run_id(*args.get("sweep"), "--sweep");
  SweepSpec spec = [&] {
    SweepStore store(db);
    const auto rec = store.get(sweep_id);
    if (!rec) throw std::runtime_error(db + ": no sweep with id " + std::to_string(sweep_id));
    return spec_of_record(*rec);
  }();
  WorkerOptions opt;
  opt.db_path = db;
  opt.threads = args.get_int("threads", 1).value_or(1);
  opt.train = [](PreparedRun& r) { return train_with_signals(r); };
  opt.on_trial = [&](const TrialOutcome& o) { print_outcome(spec, o); };
  run_sweep_worker(spec, sweep_id, opt);
  return 0;
}

int sweep_task_command(const std::vector<std::string>& argv) {
  Args args(argv, {"index", "db", "publish", "sweep-uuid", "threads"}, {});
  if (args.positional().size() != 1 || !args.get("index") || !args.get("db") ||
      !args.get("publish"))
    throw UsageError("sweep-task needs SPEC.json --index I --db LOCAL_FILE --publish DIR");
  const SweepSpec spec = load_sweep_spec(args.positional()[0]);
  const int64_t index = *args.get_int("index", 0);
  if (index >= spec.trial_count())
    throw UsageError("--index " + std::to_string(index) + ": sweep '" + spec.name + "' has " +
                     std::to_string(spec.trial_count()) + " trials (0.." +
                     std::to_string(spec.trial_count() - 1) + ")");
  const std::string db = *args.get("db");
  const std::string uuid = args.get("sweep-uuid").value_or("");
  SweepStore store(db);
  std::optional<SweepRecord> rec = uuid.empty() ? std::nullopt : store.find_by_uuid(uuid);
  // 'submitted', as the main store's record: a copy imported where the sweep
  // was never recorded (a dry run submitted by hand) is completed the same way.
  if (!rec) rec = store.create(spec.name, spec.source.dump(), uuid, "submitted");
  WorkerOptions opt;
  opt.db_path = db;
  opt.threads = args.get_int("threads", 1).value_or(1);
  opt.train = [](PreparedRun& r) { return train_with_signals(r); };
  const TrialOutcome o =
      run_claimed_trial(spec, rec->id, TrialClaim{index, std::nullopt}, store, opt);
  print_outcome(spec, o);
  if (o.run_id == 0) return 1;  // nothing was recorded: the launch itself failed
  std::string run_uuid;
  {
    ExperimentStore s(db);
    run_uuid = s.get_run(o.run_id)->uuid;
  }
  const std::string dir =
      publish_store(db, *args.get("publish"), "trial-" + std::to_string(index) + "-" + run_uuid);
  std::printf("published %s\n", dir.c_str());
  return o.status == RunStatus::kCompleted ? 0 : 3;
}

}  // namespace bl::cli
