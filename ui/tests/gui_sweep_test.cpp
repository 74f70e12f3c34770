// The Sweep dialog and the Runs tab's sweep grouping: a spec is checked as it
// is typed (errors name the field, Start is disabled), a valid one runs as a
// real `blocklab-cli sweep` in worker processes without blocking the window,
// and its runs appear in the Runs tab with their sweep and trial, filterable
// to that sweep.
#include <QComboBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>
#include <nlohmann/json.hpp>

#include "browser/run_browser.h"
#include "store/experiment_store.h"
#include "sweep/sweep_dialog.h"
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
};

QTEST_MAIN(SweepTest)
#include "gui_sweep_test.moc"
