// One experiment database shared by a long-lived process (the workbench: a
// writer and a reader connection, reopening stores as it goes) and short CLI
// training runs in other processes. Nothing in the long-lived process may drop
// its SQLite locks (e.g. by opening and closing the database file outside
// SQLite), or a finishing CLI run believes it is the last user and deletes the
// WAL that the long-lived connections still use.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.h"
#include "store/experiment_store.h"
#include "temp_files.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;
using test::write_bytes;

constexpr const char* kTinyConfig = R"({
  "model": {"name": "tiny", "n_layers": 1,
            "block": {"d_model": 16, "n_heads": 2, "d_ff": 32, "max_seq_len": 16, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 0, "max_steps": 3, "batch_size": 2, "seq_len": 16,
            "eval_interval": 3, "eval_batches": 1, "seed": 7, "threads": 1}
})";

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Through a fresh SQLite connection, not the long-lived ones.
std::string sql_text(const std::string& db, const char* sql) {
  sqlite3* h = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::string out = "(error)";
  if (sqlite3_prepare_v2(h, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  else
    out += std::string(": ") + sqlite3_errmsg(h);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

TEST(SharedDatabase, LongLivedConnectionsSurviveOtherProcessesRuns) {
  TempDir dir;
  const std::string config = dir / "tiny.json", db = dir / "experiments.db";
  write_bytes(config, kTinyConfig);

  // The long-lived process: a writer and a read-only browser, both used once.
  ExperimentStore writer(db);
  ExperimentStore reader = ExperimentStore::open_readonly(db);
  EXPECT_TRUE(writer.list_runs().empty());
  EXPECT_TRUE(reader.list_runs().empty());
  const ino_t wal = inode_of(db + "-wal");
  ASSERT_NE(wal, ino_t(0)) << "the writer runs in WAL mode";

  size_t runs = 0;
  for (int round = 0; round < 3; ++round) {
    // Two CLI runs at once, each opening, writing and closing its own connections.
    std::vector<test::CliResult> results(2);
    std::vector<std::thread> cli;
    for (size_t i = 0; i < results.size(); ++i)
      cli.emplace_back(
          [&, i] { results[i] = run_cli("train --config " + config + " --quiet --db " + db); });
    for (std::thread& t : cli) t.join();
    for (const test::CliResult& r : results) ASSERT_EQ(r.exit_code, 0) << r.out;
    runs += results.size();
    // The finished processes must have seen that this one still uses the WAL.
    EXPECT_EQ(inode_of(db + "-wal"), wal) << "round " << round << ": the WAL was replaced";
    // The workbench opens short-lived stores while its others stay open
    // (Runs tab refresh, Start): each open must keep the others' locks.
    EXPECT_EQ(ExperimentStore::open_readonly(db).list_runs().size(), runs);
    { ExperimentStore another(db); }
    EXPECT_EQ(reader.list_runs().size(), runs) << "round " << round;
    EXPECT_EQ(writer.list_runs().size(), runs) << "round " << round;
  }

  // The long-lived writer still records a run that everyone sees.
  RunRecord rec;
  rec.name = "from the long-lived process";
  const int64_t id = writer.create_run(rec);
  writer.log_metric(id, 1, 0.1, "loss", 2.5);
  writer.finish_run(id, RunStatus::kCompleted, {{"steps", 1}});
  ++runs;
  EXPECT_EQ(reader.list_runs().size(), runs);
  EXPECT_EQ(reader.metrics(id, "loss").values, std::vector<double>{2.5});
  EXPECT_EQ(sql_text(db, "SELECT count(*) FROM runs"), std::to_string(runs));
  EXPECT_EQ(sql_text(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(inode_of(db + "-wal"), wal);

  // Closing every connection checkpoints into the main file: still whole.
  reader.close();
  writer.close();
  EXPECT_EQ(sql_text(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(sql_text(db, "SELECT count(*) FROM runs"), std::to_string(runs));
  EXPECT_EQ(sql_text(db, "SELECT count(*) FROM runs WHERE status = 'completed'"),
            std::to_string(runs));
}

}  // namespace
}  // namespace bl
