// The Sweep dialog and the Runs tab's sweep grouping: a spec is checked as it
// is typed (errors name the field, Start is disabled), a valid one runs as a
// real `blocklab-cli sweep` in worker processes without blocking the window,
// and its runs appear in the Runs tab with their sweep and trial, filterable
// to that sweep. In Slurm mode the dialog writes the job array and collection
// scripts (one task of which is then run by bash as Slurm would, and the
// collection job imports it), or submits them through sbatch, saying so
// clearly when there is no sbatch.
#include <QCheckBox>
#include <QComboBox>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProcess>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "browser/run_browser.h"
#include "store/experiment_store.h"
#include "sweep/sweep_dialog.h"
#include "sweep/sweep_spec.h"
#include "sweep/sweep_store.h"
#include "test_paths.h"  // BLOCKLAB_CLI_PATH

using namespace bl;

namespace {

QString tiny_spec() {
  return QString::fromStdString(nlohmann::json::parse(R"({
  "name": "gui-sweep",
  "config": {"model": {"name": "tiny", "n_layers": 2,
                       "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32,
                                 "position": "learned"}},
             "train": {"learning_rate": 0.003, "warmup_steps": 2, "max_steps": 10, "batch_size": 2,
                       "seq_len": 32, "eval_interval": 5, "eval_batches": 2,
                       "checkpoint_interval": 5, "seed": 7, "threads": 1}},
  "grid": {"train.learning_rate": [0.003, 0.001]},
  "seeds": 2})")
                                    .dump(2));
}

QString read_text(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QString::fromUtf8(f.readAll());
}

// Runs a job script with bash in `env` (as Slurm would start it); returns exit code and output.
std::pair<int, QString> run_script(const QString& script, const QStringList& env) {
  QProcess p;
  QProcessEnvironment e = QProcessEnvironment::systemEnvironment();
  for (const QString& kv : env) e.insert(kv.section('=', 0, 0), kv.section('=', 1));
  p.setProcessEnvironment(e);
  p.setProcessChannelMode(QProcess::MergedChannels);
  p.start("bash", {script});
  if (!p.waitForFinished(300000)) return {-1, "timed out"};
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1,
          QString::fromUtf8(p.readAll())};
}

// The Slurm fields as a user fills them in.
void choose_slurm(SweepDialog& d, const QString& shared) {
  d.mode_box()->setCurrentIndex(1);
  d.partition_edit()->setText("debug");
  d.time_edit()->setText("00:05:00");
  d.max_parallel_box()->setValue(2);
  d.task_threads_box()->setValue(1);
  d.shared_edit()->setText(shared);
}

}  // namespace

class SweepTest : public QObject {
  Q_OBJECT

 private slots:
  void spec_errors_name_the_field_and_disable_start() {
    QTemporaryDir dir;
    SweepDialog d((dir.path() + "/e.db").toStdString(), nullptr, BLOCKLAB_CLI_PATH);
    QVERIFY(d.start_button()->isEnabled());  // the example spec is valid
    d.set_spec(R"({"grid": {"train.learning_rate": 0.1}})", dir.path());
    QVERIFY(!d.start_button()->isEnabled());
    QVERIFY2(
        d.status_label()->text().contains("grid.train.learning_rate: must be a non-empty array"),
        qPrintable(d.status_label()->text()));
    d.set_spec(R"({"preset": "gpt-tiny", "grid": {"model.block.n_heads": [4, 5]}})", dir.path());
    QVERIFY(!d.start_button()->isEnabled());
    QVERIFY2(d.status_label()->text().contains("trial 1"), qPrintable(d.status_label()->text()));
    QVERIFY(!d.start());
    d.set_spec("{not json", dir.path());
    QVERIFY(d.status_label()->text().contains("not valid JSON"));
    d.set_spec(tiny_spec(), dir.path());
    QVERIFY(d.start_button()->isEnabled());
    QVERIFY2(d.status_label()->text().startsWith("4 trials"), qPrintable(d.status_label()->text()));
  }

  void sweep_runs_in_workers_and_is_grouped_in_the_runs_tab() {
    QTemporaryDir dir;
    const std::string db = (dir.path() + "/e.db").toStdString();
    {
      ExperimentStore s(db);
      RunRecord hand;
      hand.name = "hand-started";
      s.finish_run(s.create_run(hand), RunStatus::kCompleted, nullptr);
    }
    RunBrowser browser(db);
    SweepDialog d(db, nullptr, BLOCKLAB_CLI_PATH);
    d.set_spec(tiny_spec(), dir.path());
    d.workers_box()->setValue(std::min(2, d.workers_box()->maximum()));
    QSignalSpy done(&d, &SweepDialog::sweep_finished);
    QVERIFY2(d.start(), qPrintable(d.status_label()->text()));
    QVERIFY(d.running());
    QVERIFY(!d.start_button()->isEnabled());
    QVERIFY(d.stop_button()->isEnabled());
    // The event loop keeps running while the sweep trains in other processes.
    QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, 300000);
    QCOMPARE(done.at(0).at(0).toInt(), 0);
    QVERIFY2(d.log_view()->toPlainText().contains("4 of 4 trials done"),
             qPrintable(d.log_view()->toPlainText()));
    QVERIFY(d.start_button()->isEnabled());

    browser.refresh();
    QCOMPARE(browser.visible_rows(), 5);
    QComboBox* sweeps = browser.sweep_box();
    const int idx = sweeps->findData(qlonglong(1));
    QVERIFY(idx >= 0);
    sweeps->setCurrentIndex(idx);
    QCOMPARE(browser.visible_rows(), 4);
    QStringList cells;
    for (int64_t id : browser.visible_ids()) cells << browser.cell(id, RunBrowser::kSweep);
    cells.sort();
    QCOMPARE(cells, QStringList({"#1 / 0", "#1 / 1", "#1 / 2", "#1 / 3"}));
    sweeps->setCurrentIndex(sweeps->findData(qlonglong(0)));
    QCOMPARE(browser.visible_rows(), 1);
    QCOMPARE(browser.cell(browser.visible_ids()[0], RunBrowser::kSweep), QString());
  }

  void slurm_dry_run_writes_the_array_whose_tasks_run_their_trial() {
    QTemporaryDir dir;
    const QString db = dir.path() + "/e.db";
    SweepDialog d(db.toStdString(), nullptr, BLOCKLAB_CLI_PATH);
    d.set_spec(tiny_spec(), dir.path());
    QCOMPARE(d.start_button()->text(), QString("Start"));
    QVERIFY(!d.partition_edit()->isVisibleTo(&d));
    QVERIFY(d.workers_box()->isVisibleTo(&d));
    const QString shared = dir.path() + "/shared";
    choose_slurm(d, shared);
    QVERIFY(d.dry_run_box()->isChecked());  // writing only is the default
    // The form shows the Slurm options instead of the local workers.
    QVERIFY(d.partition_edit()->isVisibleTo(&d));
    QVERIFY(!d.workers_box()->isVisibleTo(&d));
    QCOMPARE(d.start_button()->text(), QString("Write scripts"));
    QVERIFY(d.start_button()->isEnabled());
    QTest::mouseClick(d.start_button(), Qt::LeftButton);
    QVERIFY2(d.status_label()->text().startsWith("Wrote the job scripts for 4 trials to " + shared),
             qPrintable(d.status_label()->text()));
    QVERIFY(!QFile::exists(db));  // a dry run leaves the store alone

    const QString array = read_text(shared + "/sweep.sbatch");
    QVERIFY2(array.contains("#SBATCH --array=0-3%2\n"), qPrintable(array));
    QVERIFY(array.contains("#SBATCH --partition=debug\n"));
    QVERIFY(array.contains("#SBATCH --time=00:05:00\n"));
    QVERIFY(array.contains("#SBATCH --cpus-per-task=1\n"));
    const QString cli = QString::fromStdString(
        std::filesystem::absolute(BLOCKLAB_CLI_PATH).lexically_normal().string());
    QVERIFY2(array.contains("'" + cli + "' sweep-task '" + shared +
                            "/spec.json' --index \"$SLURM_ARRAY_TASK_ID\" --sweep-uuid '"),
             qPrintable(array));
    QVERIFY2(array.contains("--threads 1 --db \"$work/experiments.db\" --publish '" + shared +
                            "/results'\n"),
             qPrintable(array));
    const QString collect = read_text(shared + "/collect.sbatch");
    QVERIFY2(
        collect.contains("'" + cli + "' runs import '" + shared + "/results' --db '" + db + "'\n"),
        qPrintable(collect));
    QVERIFY(d.log_view()->toPlainText().contains("--array=0-3%2"));
    const SweepSpec spec = load_sweep_spec((shared + "/spec.json").toStdString());
    QCOMPARE(spec.trial_count(), int64_t(4));

    // Task 3 of the array, on its own "node", then the collection job.
    QDir().mkpath(dir.path() + "/node");
    auto [rc, out] = run_script(
        shared + "/sweep.sbatch",
        {"SLURM_ARRAY_JOB_ID=9", "SLURM_ARRAY_TASK_ID=3", "TMPDIR=" + dir.path() + "/node"});
    QVERIFY2(rc == 0 && out.contains("trial 3: completed"), qPrintable(out));
    std::tie(rc, out) = run_script(shared + "/collect.sbatch", {});
    QVERIFY2(rc == 0 && out.contains("imported 1 runs from 1 databases"), qPrintable(out));
    ExperimentStore store = ExperimentStore::open_readonly(db.toStdString());
    const auto runs = store.list_runs();
    QCOMPARE(runs.size(), size_t(1));
    QVERIFY(runs[0].sweep_trial == 3);
    QCOMPARE(runs[0].train_config["learning_rate"].get<double>(),
             sweep_trial(spec, 3).params["train.learning_rate"].get<double>());
  }

  void slurm_submit_runs_sbatch_or_says_it_is_missing() {
    QTemporaryDir dir;
    const QString db = dir.path() + "/e.db";
    SweepDialog d(db.toStdString(), nullptr, BLOCKLAB_CLI_PATH);
    d.set_spec(tiny_spec(), dir.path());
    choose_slurm(d, dir.path() + "/shared");
    d.dry_run_box()->setChecked(false);
    QCOMPARE(d.start_button()->text(), QString("Submit"));
    QSignalSpy submitted(&d, &SweepDialog::sweep_submitted);

    // No sbatch: refused with what to do instead, nothing written or recorded.
    qputenv("BLOCKLAB_SBATCH", (dir.path() + "/no-such-sbatch").toLocal8Bit());
    QVERIFY(!d.start());
    QVERIFY2(d.status_label()->text().contains("no-such-sbatch is not found") &&
                 d.status_label()->text().contains("dry run"),
             qPrintable(d.status_label()->text()));
    QVERIFY(!QFile::exists(db));
    QVERIFY(!QFile::exists(dir.path() + "/shared"));
    QCOMPARE(submitted.count(), 0);

    // A stand-in sbatch that records its arguments and answers like --parsable.
    const QString fake = dir.path() + "/sbatch", calls = dir.path() + "/calls.txt";
    {
      QFile f(fake);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(("#!/bin/sh\necho \"$@\" >> " + calls + "\nn=$(wc -l < " + calls +
               ")\necho $((4000 + n))\n")
                  .toUtf8());
      f.close();
      f.setPermissions(QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    }
    qputenv("BLOCKLAB_SBATCH", fake.toLocal8Bit());
    const bool ok = d.start();
    qunsetenv("BLOCKLAB_SBATCH");
    QVERIFY2(ok, qPrintable(d.status_label()->text()));
    QVERIFY2(d.status_label()->text().startsWith(
                 "Submitted sweep 1: array job 4001 (4 trials), collection job 4002"),
             qPrintable(d.status_label()->text()));
    const QString log = read_text(calls);
    QVERIFY2(log.contains("--parsable " + dir.path() + "/shared/sweep.sbatch\n") &&
                 log.contains("--parsable --dependency=afterany:4001 " + dir.path() +
                              "/shared/collect.sbatch\n"),
             qPrintable(log));
    QCOMPARE(submitted.count(), 1);
    QCOMPARE(submitted.at(0).at(0).toLongLong(), 1);
    SweepStore sweeps(db.toStdString());
    const auto rec = sweeps.get(1);
    QVERIFY(rec);
    QCOMPARE(QString::fromStdString(rec->status), QString("submitted"));
    QCOMPARE(QString::fromStdString(rec->name), QString("gui-sweep"));
  }
};

QTEST_MAIN(SweepTest)
#include "gui_sweep_test.moc"
