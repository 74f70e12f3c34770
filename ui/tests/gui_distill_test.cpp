// Distillation from the workbench, through the real window, engine and store:
// train a tiny teacher run, pick it in the Run panel's "Distill from", train
// the composer's (smaller) model as its student, and find the run recorded as
// the launcher records the CLI's (parent = teacher, "distill" summary block
// with T and alpha, "distill" tag). A fine-tune and a distillation exclude
// each other; Distill from without a teacher starts nothing.
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QGroupBox>
#include <QLabel>
#include <QPushButton>
#include <QTemporaryDir>
#include <QTest>
#include <algorithm>
#include <memory>

#include "main_window.h"
#include "samples/samples_panel.h"
#include "store/experiment_store.h"
#include "training/training_panel.h"

using namespace bl;

namespace {

Preset small_preset(int64_t layers, int64_t d_model, int64_t steps) {
  Preset p = load_preset("gpt-tiny");
  p.model.n_layers = layers;
  p.model.block.d_model = d_model;
  p.model.block.d_ff = 4 * d_model;
  p.train.batch_size = 4;
  p.train.seq_len = 32;
  p.train.max_steps = steps;
  p.train.eval_interval = 0;
  p.train.eval_batches = 2;
  p.train.warmup_steps = 0;
  p.train.threads = 1;
  return p;
}

}  // namespace

class DistillTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db() const { return (dir_.path() + "/experiments.db").toStdString(); }

 private slots:
  void distill_a_stored_run() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    QCOMPARE(tp->teacher_box()->count(), 0);  // nothing stored yet

    // Distill from without a teacher starts nothing.
    tp->set_distill_enabled(true);
    tp->start_button()->click();
    QVERIFY2(tp->status_label()->text().contains("pick a teacher"),
             qPrintable(tp->status_label()->text()));
    QCOMPARE(w.live_run_id(), int64_t(0));
    tp->set_distill_enabled(false);

    // The teacher: a short run, checkpointed when it completes.
    w.load_preset(small_preset(2, 64, 6), "gpt-tiny");
    tp->set_run_name("teacher");
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t teacher_id = w.live_run_id();

    // The student: the composer's smaller model, distilled from the teacher.
    w.load_preset(small_preset(1, 32, 4), "gpt-tiny");
    tp->set_run_name("");
    tp->set_finetune_enabled(true);
    tp->set_distill_enabled(true);  // unchecks the fine-tune: one or the other
    QVERIFY(!tp->finetune_group()->isChecked());
    QCOMPARE(tp->teacher_box()->count(), 1);
    QVERIFY(tp->distill_teacher() != nullptr);
    QCOMPARE(tp->distill_teacher()->run_id, teacher_id);
    QCOMPARE(tp->distill_temperature(), 2.0);  // the defaults
    QCOMPARE(tp->distill_alpha(), 0.5);
    tp->distill_temperature_box()->setValue(3.0);
    tp->distill_alpha_box()->setValue(0.25);
    QVERIFY2(w.errors().empty(), w.errors().empty() ? "" : w.errors()[0].c_str());
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.live_run_id() != teacher_id && w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t id = w.live_run_id();

    ExperimentStore store = ExperimentStore::open_readonly(db());
    const auto run = store.get_run(id);
    QVERIFY(run.has_value());
    QCOMPARE(run->parent_run_id.value_or(0), teacher_id);
    QVERIFY(run->summary.contains("distill"));
    const auto& d = run->summary["distill"];
    QCOMPARE(d["teacher_run"].get<int64_t>(), teacher_id);
    QCOMPARE(d["temperature"].get<double>(), 3.0);
    QCOMPARE(d["alpha"].get<double>(), 0.25);
    QVERIFY(std::find(run->tags.begin(), run->tags.end(), "distill") != run->tags.end());
    QCOMPARE(run->model_config["n_layers"].get<int64_t>(), int64_t(1));  // the composer's model
    QVERIFY2(QString::fromStdString(run->name).endsWith("(distilled)"), run->name.c_str());
  }
};

QTEST_MAIN(DistillTest)
#include "gui_distill_test.moc"
