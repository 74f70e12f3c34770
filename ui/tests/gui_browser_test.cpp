// The run browser against a real store: table contents, sort, filter, search,
// tag/notes edits, delete, multi-run compare (overlaid curves, config diff of
// only the differing fields), CSV/PNG export, "open in composer", and runs
// written by another connection appearing live.
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QImage>
#include <QLineEdit>
#include <QSortFilterProxyModel>
#include <QTableView>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <set>

#include "arch/arch_panel.h"
#include "browser/config_diff.h"
#include "browser/run_browser.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "training/training_panel.h"

using namespace bl;

namespace {

/// Writes a finished run the way StoreLogger does: steps, evals, summary.
int64_t write_run(ExperimentStore& s, const std::string& name, const Preset& p, int steps,
                  double best, RunStatus status, std::vector<std::string> tags = {}) {
  RunRecord r;
  r.name = name;
  r.preset = "gpt-tiny";
  r.model_config = model_config_to_json(p.model);
  r.train_config = train_config_to_json(p.train);
  r.param_count = 812'000;
  r.tags = std::move(tags);
  r.dataset_path = "/data/tiny.txt";
  const int64_t id = s.create_run(r);
  const double t0 = 1'700'000'000;
  for (int i = 0; i < steps; ++i) {
    const double wall = t0 + 0.01 * i;
    s.log_metric(id, i, wall, "loss", 4.0 - 0.01 * i);
    s.log_metric(id, i, wall, "learning_rate", 1e-3);
    s.log_metric(id, i, wall, "grad_norm", 1.0);
    s.log_metric(id, i, wall, "tokens_per_sec", 5000 + i);
    s.log_metric(id, i, wall, "step_time_ms", 10);
    s.log_metric(id, i, wall, "tokens_seen", 128.0 * (i + 1));
  }
  if (steps) s.log_eval(id, steps - 1, "eval_loss", best);
  if (status != RunStatus::kRunning)
    s.finish_run(id, status, {{"best_val_loss", best}, {"tokens_per_sec", 5000.0}});
  s.flush();
  return id;
}

}  // namespace

class BrowserTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db_;
  int64_t a_ = 0, b_ = 0, c_ = 0;
  Preset base_;

 private slots:
  void initTestCase() {
    db_ = (dir_.path() + "/experiments.db").toStdString();
    base_ = load_preset("gpt-tiny");
    ExperimentStore s(db_);
    Preset pb = base_;
    pb.train.learning_rate = 3e-3;
    pb.train.seed = 7;
    a_ = write_run(s, "baseline", base_, 50, 2.10, RunStatus::kCompleted, {"ablation"});
    b_ = write_run(s, "high-lr", pb, 40, 1.90, RunStatus::kCompleted);
    c_ = write_run(s, "crashed", base_, 5, 3.5, RunStatus::kFailed);
  }

  void table_lists_runs_with_columns() {
    RunBrowser b(db_);
    QCOMPARE(b.visible_rows(), 3);
    QCOMPARE(b.cell(a_, RunBrowser::kName), QString("baseline"));
    QCOMPARE(b.cell(a_, RunBrowser::kStatus), QString("completed"));
    QCOMPARE(b.cell(c_, RunBrowser::kStatus), QString("failed"));
    QCOMPARE(b.cell(a_, RunBrowser::kPreset), QString("gpt-tiny"));
    QCOMPARE(b.cell(a_, RunBrowser::kParams), QString("812.0 k"));
    QCOMPARE(b.cell(b_, RunBrowser::kBestEval), QString("1.9000"));
    QCOMPARE(b.cell(a_, RunBrowser::kTokensPerSec), QString("5000"));
    QCOMPARE(b.cell(a_, RunBrowser::kTags), QString("ablation"));
    QVERIFY(!b.cell(a_, RunBrowser::kDate).isEmpty());
    // Newest first by default; sorting by best eval puts the best run on top.
    QCOMPARE(b.visible_ids().front(), c_);
    b.table()->sortByColumn(RunBrowser::kBestEval, Qt::AscendingOrder);
    QCOMPARE(b.visible_ids(), (std::vector<int64_t>{b_, a_, c_}));
  }

  // Config fields as columns: picked from the runs' own fields, filled per
  // run, sorted numerically, kept for new rows.
  void config_fields_as_columns() {
    RunBrowser b(db_);
    const std::vector<std::string> paths = b.config_paths();
    for (const char* p : {"train.learning_rate", "train.seed", "model.block.d_model"})
      QVERIFY2(std::find(paths.begin(), paths.end(), p) != paths.end(), p);
    b.set_config_columns({"train.learning_rate", "model.block.d_model"});
    QCOMPARE(b.table()->model()->columnCount(), int(RunBrowser::kColumns) + 2);
    QCOMPARE(b.table()->model()->headerData(RunBrowser::kColumns, Qt::Horizontal).toString(),
             QString("train.learning_rate"));
    QCOMPARE(b.config_cell(b_, "train.learning_rate").toDouble(), 3e-3);
    QCOMPARE(b.config_cell(a_, "train.learning_rate").toDouble(), base_.train.learning_rate);
    QCOMPARE(b.config_cell(a_, "model.block.d_model"), QString::number(base_.model.block.d_model));
    QCOMPARE(b.config_cell(a_, "train.seed"), QString());  // not shown
    b.select_runs({a_, b_});  // whole rows, extra columns included
    QCOMPARE(b.selected_ids(), (std::vector<int64_t>{a_, b_}));
    QCOMPARE(b.charts()->run_ids(), (std::vector<int64_t>{a_, b_}));
    // Numeric sort: the higher learning rate last ascending.
    b.table()->sortByColumn(RunBrowser::kColumns, Qt::AscendingOrder);
    QCOMPARE(b.visible_ids().back(), b_);
    b.table()->sortByColumn(RunBrowser::kColumns, Qt::DescendingOrder);
    QCOMPARE(b.visible_ids().front(), b_);
    // A run written later gets its cells too.
    Preset pd = base_;
    pd.train.learning_rate = 0.5;
    int64_t d = 0;
    {
      ExperimentStore s(db_);
      d = write_run(s, "huge-lr", pd, 3, 9.0, RunStatus::kDiverged);
    }
    b.refresh();
    QCOMPARE(b.config_cell(d, "train.learning_rate").toDouble(), 0.5);
    b.set_config_columns({});
    QCOMPARE(b.table()->model()->columnCount(), int(RunBrowser::kColumns));
    ExperimentStore s(db_);
    s.delete_run(d);
  }

  void filter_search_and_edit() {
    RunBrowser b(db_);
    b.status_box()->setCurrentIndex(b.status_box()->findData("failed"));
    QCOMPARE(b.visible_ids(), std::vector<int64_t>{c_});
    b.status_box()->setCurrentIndex(0);
    b.search_box()->setText("ablation");  // tags are searched
    QCOMPARE(b.visible_ids(), std::vector<int64_t>{a_});
    b.search_box()->setText("HIGH");  // case-insensitive name match
    QCOMPARE(b.visible_ids(), std::vector<int64_t>{b_});
    b.search_box()->clear();

    QVERIFY(b.set_tags(b_, {"lr-sweep", "keep"}));
    QVERIFY(b.set_notes(b_, "best so far"));
    QCOMPARE(b.cell(b_, RunBrowser::kTags), QString("keep, lr-sweep"));
    b.search_box()->setText("best so far");  // notes are searched too
    QCOMPARE(b.visible_ids(), std::vector<int64_t>{b_});
    ExperimentStore ro = ExperimentStore::open_readonly(db_);
    QCOMPARE(ro.get_run(b_)->notes, std::string("best so far"));
    QCOMPARE(ro.get_run(b_)->tags, (std::vector<std::string>{"keep", "lr-sweep"}));
  }

  void compare_two_runs_diffs_only_differing_fields() {
    RunBrowser b(db_);
    b.resize(1200, 800);
    b.show();
    b.select_runs({a_, b_});
    QCOMPARE(b.selected_ids(), (std::vector<int64_t>{a_, b_}));
    // Curves of both runs overlaid.
    QCOMPARE(b.charts()->run_ids(), (std::vector<int64_t>{a_, b_}));
    QCOMPARE(b.charts()->loss_plot()->series_count(), 4);  // train + eval per run
    QCOMPARE(b.charts()->loss_plot()->point_count(0), qsizetype(50));
    QCOMPARE(b.charts()->loss_plot()->point_count(2), qsizetype(40));
    // Diff: exactly the two fields that differ.
    QTableWidget* d = b.diff_table();
    QCOMPARE(d->columnCount(), 3);
    std::set<QString> fields;
    for (int r = 0; r < d->rowCount(); ++r) {
      fields.insert(d->item(r, 0)->text());
      QVERIFY(d->item(r, 1)->text() != d->item(r, 2)->text());
    }
    QCOMPARE(fields, (std::set<QString>{"train.learning_rate", "train.seed"}));
    for (int r = 0; r < d->rowCount(); ++r)
      if (d->item(r, 0)->text() == "train.seed") {
        QCOMPARE(d->item(r, 1)->text(), QString::number(base_.train.seed));
        QCOMPARE(d->item(r, 2)->text(), QString("7"));
      }

    // Exports.
    const QString csv = dir_.path() + "/m.csv", png = dir_.path() + "/c.png";
    QVERIFY(b.export_csv(csv));
    QFile f(csv);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QStringList lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.front(), QString("run_id,run_name,metric,step,wall_time,value"));
    QCOMPARE(lines.size(), 1 + (50 + 40) * 6);  // six metrics per step
    QVERIFY(lines.contains(QString("%1,\"high-lr\",loss,1,1700000000.000,4").arg(b_)));
    QVERIFY(b.export_png(png));
    const QImage img(png);
    QVERIFY(!img.isNull() && img.width() > 300 && img.height() > 200);
  }

  void config_diff_function() {
    nlohmann::json x = {{"a", 1}, {"b", {{"c", "x"}, {"d", {1, 2}}}}};
    nlohmann::json y = {{"a", 1}, {"b", {{"c", "y"}, {"d", {1, 3}}}}, {"e", true}};
    const std::vector<DiffRow> rows = config_diff({x, y});
    QCOMPARE(rows.size(), size_t(3));
    QCOMPARE(rows[0].field, std::string("b.c"));
    QCOMPARE(rows[1].field, std::string("b.d.1"));
    QCOMPARE(rows[2].field, std::string("e"));
    QCOMPARE(rows[2].values[0], std::string("—"));
    QVERIFY(config_diff({x, x}).empty());
  }

  void delete_removes_run() {
    RunBrowser b(db_);
    QVERIFY(b.delete_runs({c_}));
    QVERIFY(b.cell(c_, RunBrowser::kName).isEmpty());
    QVERIFY(!ExperimentStore::open_readonly(db_).get_run(c_).has_value());
    c_ = 0;
  }

  void runs_from_another_connection_appear_live() {
    RunBrowser b(db_);
    const int before = b.visible_rows();
    ExperimentStore writer(db_);  // as another process would: its own connection
    const int64_t id = write_run(writer, "cli-run", base_, 10, 0, RunStatus::kRunning);
    QTRY_COMPARE_WITH_TIMEOUT(b.visible_rows(), before + 1, 5000);  // by the poll timer
    QCOMPARE(b.cell(id, RunBrowser::kStatus), QString("running"));
    b.select_runs({id});
    QCOMPARE(b.charts()->loss_plot()->point_count(0), qsizetype(10));
    for (int i = 10; i < 25; ++i)
      for (const char* m : {"loss", "learning_rate", "grad_norm", "tokens_per_sec", "tokens_seen"})
        writer.log_metric(id, i, 1'700'000'000 + 0.01 * i, m, 1.0 + i);
    writer.flush();
    QTRY_COMPARE_WITH_TIMEOUT(b.charts()->loss_plot()->point_count(0), qsizetype(25), 5000);
    writer.finish_run(id, RunStatus::kCompleted, {{"best_val_loss", 1.5}});
    QTRY_COMPARE_WITH_TIMEOUT(b.cell(id, RunBrowser::kStatus), QString("completed"), 5000);
  }

  void open_in_composer_loads_the_config() {
    MainWindow w("gpt-tiny", db_);
    w.browser()->refresh();
    const auto run = w.browser()->run(b_);
    QVERIFY(run.has_value());
    QVERIFY(w.load_run_config(*run));
    QCOMPARE(w.training_panel()->lr_box()->value(), 3e-3);
    QCOMPARE(w.training_panel()->seed_box()->value(), 7);
    QCOMPARE(w.training_panel()->run_name(), QString("high-lr (fork)"));
    QCOMPARE(w.current_preset().train.learning_rate, 3e-3);
    QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.arch_panel()));
  }
};

QTEST_MAIN(BrowserTest)
#include "gui_browser_test.moc"
