// End to end on a real single-node Slurm cluster started inside the test
// (Debian slurm-wlm + munge, ProctrackType=proctrack/pgid, no systemd, all
// state in a temporary directory): `blocklab-cli sweep --slurm` submits the
// array and the collection job, the tasks train and publish, and the
// collection job imports every run into the main store. Skipped, naming the
// reason (the daemon's own log line), only where a cluster cannot start:
// packages missing, not root, or a daemon refusing to run.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_support.h"
#include "store/experiment_store.h"
#include "temp_files.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}) {
    const std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// Output and exit code of a shell command.
std::pair<int, std::string> sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// The last non-empty lines of a log, to say why a daemon did not start.
std::string log_tail(const std::string& path, int lines = 3) {
  std::ifstream f(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(f, l);)
    if (!l.empty()) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > size_t(lines) ? all.size() - size_t(lines) : 0; i < all.size(); ++i)
    out += all[i] + "\n";
  return out.empty() ? "(no log at " + path + ")" : out;
}

class SlurmCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"})
      if (find_program(p).empty())
        GTEST_SKIP() << p
                     << " not found: install the single-node cluster with apt-get install "
                        "slurm-wlm munge (scripts/install-deps.sh does)";
    if (geteuid() != 0)
      GTEST_SKIP() << "the test cluster runs its daemons as root (SlurmUser=root)";
    if (!fs::exists("/etc/munge/munge.key"))
      GTEST_SKIP() << "/etc/munge/munge.key is missing (the munge package creates it)";
    const std::string d = dir_.path();
    fs::create_directories(d + "/state");
    fs::create_directories(d + "/spool");
    fs::create_directories(d + "/munge");
    fs::permissions(d + "/munge", fs::perms::owner_all);
    // Ports from the pid: two test runs at once do not meet.
    const int port = 20000 + int(getpid() % 20000);
    conf_ = d + "/slurm.conf";
    std::ofstream(conf_)
        << "ClusterName=bltest\n"
           "SlurmctldHost=localhost(127.0.0.1)\n"
           "SlurmUser=root\nSlurmdUser=root\n"
           "SlurmctldPort="
        << port << "\nSlurmdPort=" << port + 1
        << "\n"
           "AuthType=auth/munge\nCredType=cred/munge\n"
           "AuthInfo=socket="
        << d
        << "/munge/munge.sock\n"
           "StateSaveLocation="
        << d
        << "/state\n"
           "SlurmdSpoolDir="
        << d
        << "/spool\n"
           "SlurmctldPidFile="
        << d
        << "/slurmctld.pid\n"
           "SlurmdPidFile="
        << d
        << "/slurmd.pid\n"
           "SlurmctldLogFile="
        << d
        << "/slurmctld.log\n"
           "SlurmdLogFile="
        << d
        << "/slurmd.log\n"
           "ProctrackType=proctrack/pgid\nTaskPlugin=task/none\n"
           "JobAcctGatherType=jobacct_gather/none\n"
           "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
           "SchedulerType=sched/builtin\n"
           "AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n"
           "MpiDefault=none\nReturnToService=2\n"
           "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n"
           "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE "
           "State=UP\n";
    setenv("SLURM_CONF", conf_.c_str(), 1);
    auto [rc, out] = sh("munged --force --socket=" + d + "/munge/munge.sock --pid-file=" + d +
                        "/munge/munged.pid --log-file=" + d + "/munge/munged.log --seed-file=" + d +
                        "/munge/seed --key-file=/etc/munge/munge.key");
    if (rc != 0)
      GTEST_SKIP() << "munged did not start: " << out << log_tail(d + "/munge/munged.log");
    started_.push_back(d + "/munge/munged.pid");
    std::tie(rc, out) = sh("slurmctld -i");
    if (rc != 0)
      GTEST_SKIP() << "slurmctld did not start: " << out << log_tail(d + "/slurmctld.log");
    started_.push_back(d + "/slurmctld.pid");
    std::tie(rc, out) = sh("slurmd -N localhost");
    if (rc != 0) GTEST_SKIP() << "slurmd did not start: " << out << log_tail(d + "/slurmd.log");
    started_.push_back(d + "/slurmd.pid");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string state;
    while (std::chrono::steady_clock::now() < deadline) {
      state = sh("sinfo -h -o %T").second;
      if (state.find("idle") != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    GTEST_SKIP() << "the node did not come up (sinfo: " << state
                 << "):\nslurmctld: " << log_tail(d + "/slurmctld.log")
                 << "slurmd: " << log_tail(d + "/slurmd.log");
  }

  void TearDown() override {
    // Stop only the daemons this test started, newest first, by their pid files.
    for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
      std::ifstream f(*it);
      pid_t pid = 0;
      if (f >> pid && pid > 0) kill(pid, SIGTERM);
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    unsetenv("SLURM_CONF");
  }

  TempDir dir_;
  std::string conf_;
  std::vector<std::string> started_;
};

TEST_F(SlurmCluster, SweepArrayTrainsEveryTrialAndTheCollectionJobImportsThem) {
  const json cfg = json::parse(R"({
  "model": {"name": "tiny", "n_layers": 2,
            "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 2, "max_steps": 12, "batch_size": 2, "seq_len": 32,
            "eval_interval": 6, "eval_batches": 2, "checkpoint_interval": 6, "seed": 7, "threads": 1}})");
  const std::string spec = dir_ / "spec.json";
  test::write_bytes(spec, json{{"name", "e2e"},
                               {"config", cfg},
                               {"grid", {{"train.learning_rate", {0.003, 0.001}}}},
                               {"seeds", 2}}
                              .dump());
  const std::string db = dir_ / "main/experiments.db";
  const std::string shared = dir_ / "shared";
  auto r = test::run_cli("sweep " + spec + " --slurm --shared " + shared +
                         " --max-parallel 2 --db " + db + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json sub = json::parse(r.last_line());
  const std::string collect = sub["collect_job"];
  // The collection job runs after the whole array; wait until it has left the queue.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(400);
  while (std::chrono::steady_clock::now() < deadline &&
         !sh("squeue -h -j " + collect + " -o %i").second.empty())
    std::this_thread::sleep_for(std::chrono::seconds(1));
  std::string logs;
  for (const auto& e : fs::directory_iterator(shared + "/logs"))
    logs += e.path().filename().string() + ":\n" + test::read_bytes(e.path().string()) + "\n";
  ASSERT_TRUE(fs::exists(db)) << "nothing was imported; job logs:\n" << logs;
  ExperimentStore store = ExperimentStore::open_readonly(db);
  RunFilter f;
  f.sweep_id = sub["sweep_id"].get<int64_t>();
  f.newest_first = false;
  const auto runs = store.list_runs(f);
  ASSERT_EQ(runs.size(), 4u) << logs;
  std::set<int64_t> trials;
  for (const RunRecord& run : runs) {
    EXPECT_EQ(run.status, RunStatus::kCompleted) << run.status_message;
    trials.insert(*run.sweep_trial);
    EXPECT_FALSE(store.checkpoints(run.id).empty());
  }
  EXPECT_EQ(trials, (std::set<int64_t>{0, 1, 2, 3}));
  EXPECT_NE(logs.find("imported 4 runs from 4 databases"), std::string::npos) << logs;
  // The submitted sweep is completed by the collection job's import.
  r = test::run_cli("sweep list --json --db " + db, false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)[0]["status"], "completed") << r.out;
}

}  // namespace
}  // namespace bl
