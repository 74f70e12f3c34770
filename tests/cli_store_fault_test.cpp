// Fault injection with real processes (issue 18 B/D): blocklab-cli trains
// while this process holds the database's write lock, fills it, damages it,
// kills a run after its final checkpoint, tampers with checkpoint files and
// lists runs from a read-only directory. Each test fails on the code before
// the fix (noted per test).
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.h"
#include "io/sha256.h"
#include "lora/adapter_io.h"
#include "store/experiment_store.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;
using test::write_bytes;
using Clock = std::chrono::steady_clock;

// 0.3 ms a step: --steps 3000 trains for about a second.
constexpr const char* kConfig = R"({
  "model": {"name": "tiny", "n_layers": 1,
            "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 0, "max_steps": 60, "batch_size": 8, "seq_len": 32,
            "eval_interval": 30, "eval_batches": 1, "seed": 7, "threads": 1}
})";

double secs_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// An SQLite connection of this process (another process than the CLI's).
class Db {
 public:
  explicit Db(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &h_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(h_, 10000);
  }
  ~Db() { sqlite3_close_v2(h_); }
  std::string text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out = "(error)";
    if (sqlite3_prepare_v2(h_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      const int rc = sqlite3_step(st);
      if (rc == SQLITE_ROW)
        out = sqlite3_column_text(st, 0) ? (const char*)sqlite3_column_text(st, 0) : "(null)";
      else if (rc == SQLITE_DONE)
        out = "";
    }
    if (out == "(error)") out += std::string(": ") + sqlite3_errmsg(h_);
    sqlite3_finalize(st);
    return out;
  }
  int64_t count(const std::string& sql) { return std::stoll(text(sql)); }
  bool exec(const std::string& sql) {
    return sqlite3_exec(h_, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  }

 private:
  sqlite3* h_ = nullptr;
};

struct Fixture {
  TempDir dir;
  std::string config = dir / "tiny.json", db = dir / "experiments.db";
  Fixture() {
    write_bytes(config, kConfig);
    ExperimentStore s(db);  // schema in place, so this process can lock it at once
  }
  std::string train(const std::string& extra = "") const {
    return "train --config " + config + " --quiet --json --db " + db + " " + extra;
  }
};

nlohmann::json last_json(const test::CliResult& r) {
  return nlohmann::json::parse(r.last_line(), nullptr, false);
}

// Starts `args` and, once its run row exists, holds the write lock for
// `hold_s` seconds from another connection. Returns the CLI's result.
test::CliResult run_with_lock(const Fixture& f, const std::string& args, double hold_s,
                              const std::string& env = "") {
  auto cli = std::async(std::launch::async, [&] { return run_cli(env + args); });
  // run_cli prefixes the CLI path; an env assignment goes through `env`.
  Db lock(f.db);
  const auto t0 = Clock::now();
  while (lock.count("SELECT count(*) FROM runs WHERE status = 'running'") == 0 &&
         secs_since(t0) < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_TRUE(lock.exec("BEGIN IMMEDIATE"));
  std::this_thread::sleep_for(std::chrono::duration<double>(hold_s));
  EXPECT_TRUE(lock.exec("COMMIT"));
  return cli.get();
}

// Before: every metric flush waited 5 s for the lock (busy_timeout), and the
// final checkpoint's registration failed with "database is locked", exit 1,
// leaving a checkpoint on disk that train --resume could not find.
TEST(StoreFaults, LockHeldThroughTrainingAndFinalCheckpointStallsNothingAndLosesNothing) {
  Fixture f;
  const auto t0 = Clock::now();
  const test::CliResult r = run_with_lock(f, f.train("--flush-interval 0.1 --steps 3000"), 6.0);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_GE(secs_since(t0), 6.0);  // the lock really outlasted the run's training
  const nlohmann::json j = last_json(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  // Training itself never waited for the lock.
  EXPECT_LT(j["elapsed_s"].get<double>(), 4.5) << r.out;  // before: over 5 s per flush
  const int64_t id = j["run_id"];
  ExperimentStore s(f.db);
  const auto run = s.get_run(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kCompleted) << run->status_message;
  EXPECT_EQ(s.metrics(id, "loss").size(), 3000u);
  const auto ck = s.checkpoints(id);
  ASSERT_FALSE(ck.empty());
  EXPECT_EQ(ck.back().step, 3000);
  // And resuming it further works from that registered checkpoint.
  const test::CliResult more =
      run_cli("train --resume " + std::to_string(id) + " --steps 3002 --quiet --db " + f.db);
  EXPECT_EQ(more.exit_code, 0) << more.out;
}

// Sets an environment variable for the CLI processes started in its scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(std::string n, const std::string& v) : name(std::move(n)) {
    setenv(name.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

std::string journal_of(const Fixture& f, int64_t id) {
  return (fs::path(f.dir.path()) / "runs" / std::to_string(id) / "pending-writes.jsonl").string();
}

// A lock held past the retry deadline: the writes are kept in the run's
// journal, the process says exactly what and where, and the next open that
// can write replays them. (Before: exit 1 and the registration was lost.)
TEST(StoreFaults, LockOutlastingTheRetryDeadlineKeepsWritesInAJournal) {
  Fixture f;
  test::CliResult r;
  {
    ScopedEnv retry("BLOCKLAB_STORE_RETRY_S", "0.5");
    r = run_with_lock(f, f.train(), 4.0);
  }
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const int64_t id = last_json(r)["run_id"];
  const std::string journal = journal_of(f, id);
  EXPECT_NE(r.out.find("kept "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(journal), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the final status and summary"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(journal));
  {
    ExperimentStore s(f.db);  // replays
    const auto run = s.get_run(id);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, RunStatus::kCompleted) << run->status_message;
    EXPECT_EQ(s.metrics(id, "loss").size(), 60u);
    ASSERT_FALSE(s.checkpoints(id).empty());
    EXPECT_EQ(s.checkpoints(id).back().step, 60);
  }
  EXPECT_FALSE(fs::exists(journal));
}

// SQLITE_FULL mid-run. Before: "lost 256 buffered metric rows", the run stayed
// `running`. Now the rows and the final status are kept and replayed.
TEST(StoreFaults, FullDatabaseKeepsRowsAndStatusForTheNextOpen) {
  Fixture f;
  const auto size = fs::file_size(f.db);
  test::CliResult r;
  {
    // Room for the run row and a few batches, not for 60 steps of metrics.
    ScopedEnv cap("BLOCKLAB_DB_MAX_BYTES", std::to_string(size + 3 * 4096));
    r = run_cli(f.train("--flush-interval 0.05 --steps 200"));
  }
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const int64_t id = last_json(r)["run_id"];
  EXPECT_NE(r.out.find("full"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(journal_of(f, id)), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("lost"), std::string::npos) << r.out;
  {
    ExperimentStore s(f.db);  // without the cap: replays the journal
    const auto run = s.get_run(id);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, RunStatus::kCompleted) << run->status_message;
    EXPECT_EQ(s.metrics(id, "loss").size(), 200u);
    EXPECT_EQ(s.checkpoints(id).back().step, 200);
  }
  EXPECT_FALSE(fs::exists(journal_of(f, id)));
  EXPECT_EQ(Db(f.db).text("PRAGMA integrity_check"), "ok");
}

// SIGKILL after the final checkpoint was registered, before the summary: the
// run is `interrupted` and lacks its last metrics. Before: train --resume
// refused ("already reached step 60 of 60"); now it finishes the run.
TEST(StoreFaults, ResumeFinishesARunKilledAfterItsFinalCheckpoint) {
  Fixture f;
  const test::CliResult r = run_cli(f.train());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const int64_t id = last_json(r)["run_id"];
  {
    // Exactly what a kill at that point leaves (a real kill cannot be timed
    // to land between two writes of the same process).
    Db db(f.db);
    const std::string i = std::to_string(id);
    ASSERT_TRUE(
        db.exec("UPDATE runs SET status = 'running', summary = NULL, finished_at = NULL, "
                "pid = 2147483000 WHERE id = " +
                i));
    ASSERT_TRUE(db.exec("DELETE FROM metrics WHERE run_id = " + i + " AND step = 59"));
  }
  const test::CliResult res = run_cli("train --resume " + std::to_string(id) + " --db " + f.db);
  ASSERT_EQ(res.exit_code, 0) << res.out;
  EXPECT_NE(res.out.find("marked completed from its final checkpoint"), std::string::npos)
      << res.out;
  ExperimentStore s(f.db);
  const auto run = s.get_run(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kCompleted);
  EXPECT_EQ(run->summary["steps"], 60);
  EXPECT_TRUE(run->summary.contains("finished_from_checkpoint")) << run->summary.dump();
  EXPECT_EQ(s.list_runs().size(), 1u);  // no new run
  // A completed run still needs --steps to go on.
  EXPECT_NE(run_cli("train --resume " + std::to_string(id) + " --db " + f.db).exit_code, 0);
}

// A real SIGKILL while the final checkpoint's registration waits for a locked
// database: the registration was written ahead, so the next open registers it
// and train --resume finishes the run from it. (Before: the checkpoint was
// never registered and resume refused: "no checkpoint to resume from".)
TEST(StoreFaults, KilledWhileWaitingForTheLockKeepsTheFinalCheckpoint) {
  Fixture f;
  const std::vector<std::string> args = {
      BLOCKLAB_CLI_PATH, "train", "--config", f.config, "--quiet", "--db", f.db, "--steps", "3000"};
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  Db lock(f.db);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const auto t0 = Clock::now();
  while (lock.count("SELECT count(*) FROM runs WHERE status = 'running'") == 0 &&
         secs_since(t0) < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_TRUE(lock.exec("BEGIN IMMEDIATE"));
  const int64_t id = lock.count("SELECT max(id) FROM runs");
  const std::string intent =
      (fs::path(f.dir.path()) / "runs" / std::to_string(id) / "pending-checkpoint-3000.json")
          .string();
  while (!fs::exists(intent) && secs_since(t0) < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(fs::exists(intent)) << [&] {
    std::string files;
    for (const auto& e : fs::recursive_directory_iterator(f.dir.path()))
      files += e.path().string() + "\n";
    return files;
  }();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // now waiting for the lock
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_TRUE(lock.exec("COMMIT"));
  const test::CliResult res = run_cli("train --resume " + std::to_string(id) + " --db " + f.db);
  ASSERT_EQ(res.exit_code, 0) << res.out;
  EXPECT_NE(res.out.find("marked completed from its final checkpoint"), std::string::npos)
      << res.out;
  ExperimentStore s(f.db);
  EXPECT_EQ(s.get_run(id)->status, RunStatus::kCompleted);
  ASSERT_FALSE(s.checkpoints(id).empty());
  EXPECT_EQ(s.checkpoints(id).back().step, 3000);
  EXPECT_EQ(s.get_run(id)->summary["steps"], 3000);
  for (const auto& e : fs::directory_iterator(fs::path(intent).parent_path()))
    EXPECT_FALSE(e.path().filename().string().starts_with("pending-")) << e.path();
}

// Before: a truncated or overwritten database was written to, exit 0.
TEST(StoreFaults, DamagedDatabaseIsRefusedNamingItAndLeftUnchanged) {
  for (const char* damage : {"truncate", "overwrite"}) {
    SCOPED_TRACE(damage);
    Fixture f;
    ASSERT_EQ(run_cli(f.train("--steps 5")).exit_code, 0);
    ASSERT_FALSE(fs::exists(f.db + "-wal"));  // checkpointed: the main file holds everything
    const auto size = fs::file_size(f.db);
    if (std::string(damage) == "truncate") {
      fs::resize_file(f.db, size - 1);
    } else {
      std::fstream io(f.db, std::ios::in | std::ios::out | std::ios::binary);
      io.seekp(4096 * 2);  // the whole third page
      const std::string junk(4096, '\x5a');
      io.write(junk.data(), std::streamsize(junk.size()));
    }
    const std::string before = test::read_bytes(f.db);
    const test::CliResult r = run_cli(f.train("--steps 5"));
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find(f.db), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("damaged"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(".recover"), std::string::npos) << r.out;
    EXPECT_TRUE(test::read_bytes(f.db) == before) << "the damaged file was written to";
  }
}

// runs list of a WAL database in a read-only directory (no -shm can be made).
TEST(StoreFaults, ReadOnlyDirectoryStillLists) {
  Fixture f;
  ASSERT_EQ(run_cli(f.train("--steps 3 --name ro-run")).exit_code, 0);
  const std::string sub = f.dir / "ro";
  fs::create_directory(sub);
  fs::rename(f.db, sub + "/experiments.db");
  const std::string db = sub + "/experiments.db";
  fs::permissions(f.dir.path(), fs::perms::owner_all | fs::perms::others_read |
                                    fs::perms::others_exec | fs::perms::group_read |
                                    fs::perms::group_exec);
  fs::permissions(sub, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::others_read |
                           fs::perms::others_exec | fs::perms::group_read | fs::perms::group_exec);
  // root ignores permissions: list as an unprivileged user instead.
  const std::string as_user =
      geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
  std::string cmd = as_user + BLOCKLAB_CLI_PATH + std::string(" runs list --db ") + db + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_TRUE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  fs::permissions(sub, fs::perms::owner_all);
  EXPECT_EQ(WEXITSTATUS(st), 0) << out;
  EXPECT_NE(out.find("ro-run"), std::string::npos) << out;
}

// train --resume verifies every file of the checkpoint. Before: only
// model.safetensors, so these resumed silently.
TEST(StoreFaults, TamperedCheckpointFilesAreRefusedNamingTheFile) {
  Fixture f;
  const test::CliResult r = run_cli(f.train("--steps 4"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const int64_t id = last_json(r)["run_id"];
  const std::string ck = last_json(r)["checkpoint"];
  const std::string resume =
      "train --resume " + std::to_string(id) + " --steps 6 --quiet --db " + f.db;
  auto tamper = [&](const std::string& file, auto&& edit) {
    const std::string path = ck + "/" + file;
    const std::string orig = test::read_bytes(path);
    std::string bytes = orig;
    edit(bytes);
    write_bytes(path, bytes);
    const test::CliResult res = run_cli(resume);
    EXPECT_NE(res.exit_code, 0) << file << ": " << res.out;
    EXPECT_NE(res.out.find(path), std::string::npos) << res.out;
    write_bytes(path, orig);
  };
  tamper("checkpoint.json", [](std::string& b) {
    const size_t at = b.find("\"step\": 4");
    ASSERT_NE(at, std::string::npos) << b;
    b.replace(at, 9, "\"step\": 3");
  });
  tamper("checkpoint.json", [](std::string& b) {
    const size_t at = b.find("\"learning_rate\": 0.003");
    ASSERT_NE(at, std::string::npos);
    b.replace(at, 22, "\"learning_rate\": 0.300");
  });
  tamper("optimizer.safetensors", [](std::string& b) { b[b.size() - 3] ^= 0x10; });
  // A rewritten manifest is caught by the SHA-256 the database recorded for it.
  tamper("manifest.json", [](std::string& b) { b.insert(b.size() - 2, " "); });
  // Untouched, it resumes.
  EXPECT_EQ(run_cli(resume).exit_code, 0);
}

// A checkpoint saved before manifests existed (none, and the database holds
// the SHA-256 of model.safetensors) still resumes; a changed model is refused.
TEST(StoreFaults, CheckpointWithoutManifestIsVerifiedAsBefore) {
  Fixture f;
  const test::CliResult r = run_cli(f.train("--steps 4"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const int64_t id = last_json(r)["run_id"];
  const std::string ck = last_json(r)["checkpoint"];
  fs::remove(ck + "/manifest.json");
  const std::string model = ck + "/model.safetensors";
  ASSERT_TRUE(Db(f.db).exec("UPDATE checkpoints SET sha256 = '" + sha256_file(model) +
                            "' WHERE run_id = " + std::to_string(id)));
  const std::string resume =
      "train --resume " + std::to_string(id) + " --steps 6 --quiet --db " + f.db;
  std::string bytes = test::read_bytes(model);
  bytes[bytes.size() - 5] ^= 0x01;
  const std::string orig = test::read_bytes(model);
  write_bytes(model, bytes);
  const test::CliResult bad = run_cli(resume);
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  EXPECT_NE(bad.out.find(model), std::string::npos) << bad.out;
  write_bytes(model, orig);
  const test::CliResult ok = run_cli(resume);
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
}

// Blocklab's PEFT adapter directories carry a manifest too.
TEST(StoreFaults, TamperedAdapterFilesAreRefusedNamingTheFile) {
  TempDir dir;
  Adapter ad;
  ad.rank = 2;
  ad.alpha = 4;
  AdapterLayer l;
  l.rank = 2;
  l.in = 4;
  l.out = 4;
  l.alpha = 4;
  l.a.assign(8, 0.25f);
  l.b.assign(8, 0.5f);
  ad.layers["layers.0.attention.q_proj"] = l;
  const std::string path = dir / "adapter";
  write_peft_adapter(path, ad);
  EXPECT_EQ(read_peft_adapter(path).layers.size(), 1u);
  for (const char* file : {"adapter_model.safetensors", "adapter_config.json"}) {
    const std::string f = path + "/" + file;
    const std::string orig = test::read_bytes(f);
    std::string bytes = orig;
    bytes[bytes.size() - 2] ^= 0x04;
    write_bytes(f, bytes);
    std::string msg;
    try {
      read_peft_adapter(path);
    } catch (const AdapterError& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find(f), std::string::npos) << file << ": " << msg;
    write_bytes(f, orig);
  }
  // A PEFT directory from elsewhere (no manifest) loads as before.
  fs::remove(path + "/manifest.json");
  EXPECT_EQ(read_peft_adapter(path).layers.size(), 1u);
}

}  // namespace
}  // namespace bl
