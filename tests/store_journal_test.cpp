// The write journal (store/write_journal.h): what the database could not take
// is replayed by the next read-write open, skipping a torn last line, and left
// alone while its run's process still runs.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "store/experiment_store.h"
#include "store/write_journal.h"
#include "temp_files.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

std::vector<WriteItem> some_writes(int64_t run) {
  std::vector<WriteItem> w;
  for (int64_t step = 0; step < 3; ++step) {
    WriteItem m;
    m.run_id = run;
    m.step = step;
    m.wall_time = 1.0 + double(step);
    m.name = "loss";
    m.value = step == 1 ? std::numeric_limits<double>::quiet_NaN() : 4.0 - double(step);
    w.push_back(m);
  }
  WriteItem ck;
  ck.kind = WriteItem::Kind::kCheckpoint;
  ck.run_id = run;
  ck.step = 3;
  ck.path = "/ck/step-3";
  ck.sha256 = "abc";
  w.push_back(ck);
  WriteItem fin;
  fin.kind = WriteItem::Kind::kFinish;
  fin.run_id = run;
  fin.status = RunStatus::kCompleted;
  fin.summary = {{"steps", 3}};
  w.push_back(fin);
  return w;
}

TEST(WriteJournal, ReplayedByTheNextOpenThenRemoved) {
  TempDir dir;
  const std::string db = dir / "exp.db";
  int64_t run = 0;
  {
    ExperimentStore s(db);
    RunRecord r;
    r.pid = 2147483000;  // a dead process: recovered as interrupted, then replayed
    run = s.create_run(r);
  }
  append_write_journal(db, some_writes(run));
  const std::string journal = write_journal_path(db, run);
  std::ofstream(journal, std::ios::app) << "{\"op\": \"metric\", \"run\": ";  // torn line
  EXPECT_EQ(describe_writes(some_writes(run)),
            "3 metric rows, 1 checkpoint registration, the final status and summary");
  ExperimentStore s(db);
  EXPECT_FALSE(fs::exists(journal));
  const auto rec = s.get_run(run);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->status, RunStatus::kCompleted);
  EXPECT_EQ(rec->summary["steps"], 3);
  const MetricSeries loss = s.metrics(run, "loss");
  ASSERT_EQ(loss.size(), 3u);
  EXPECT_TRUE(std::isnan(loss.values[1]));
  ASSERT_EQ(s.checkpoints(run).size(), 1u);
  EXPECT_EQ(s.checkpoints(run)[0].sha256, "abc");
}

TEST(WriteJournal, LeftToALiveRunAndDroppedForADeletedOne) {
  TempDir dir;
  const std::string db = dir / "exp.db";
  int64_t live = 0, gone = 0;
  {
    ExperimentStore s(db);
    live = s.create_run(RunRecord{});  // this process: still running
    gone = s.create_run(RunRecord{});
    s.delete_run(gone);
  }
  append_write_journal(db, some_writes(live));
  append_write_journal(db, some_writes(gone));
  ExperimentStore s(db);
  EXPECT_TRUE(fs::exists(write_journal_path(db, live)));
  EXPECT_EQ(s.get_run(live)->status, RunStatus::kRunning);
  EXPECT_TRUE(s.metrics(live, "loss").values.empty());
  EXPECT_FALSE(fs::exists(write_journal_path(db, gone)));
}

}  // namespace
}  // namespace bl
