// `blocklab-screenshots [OUT_DIR]`: renders every main view of the workbench
// offscreen and saves PNGs (docs/screenshots/ in the repo): the composer, the
// live charts and samples after a short real training run, and the run browser
// comparing two runs, a LoRA fine-tune's settings and the runs' lineage. Uses a
// temporary experiment database.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QElapsedTimer>
#include <QPushButton>
#include <QSpinBox>
#include <QStyleFactory>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QThread>
#include <cstdio>
#include <functional>

#include "arch/arch_panel.h"
#include "browser/run_browser.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "samples/samples_panel.h"
#include "training/training_panel.h"

namespace {
bool wait_until(const std::function<bool()>& done, int timeout_ms) {
  QElapsedTimer t;
  t.start();
  while (!done() && t.elapsed() < timeout_ms) {
    QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
    QThread::msleep(10);
  }
  return done();
}
bool save(QWidget& w, const QString& path) {
  QCoreApplication::processEvents();
  const bool ok = w.grab().save(path);
  std::printf("%s %s\n", ok ? "wrote" : "FAILED", qPrintable(path));
  return ok;
}
/// One short real run: `steps` steps of the 4-layer preset on small batches.
bool train(bl::MainWindow& w, int steps, double lr) {
  bl::TrainingPanel* tp = w.training_panel();
  tp->max_steps_box()->setValue(steps);
  tp->batch_size_box()->setValue(8);
  tp->seq_len_box()->setValue(64);
  tp->eval_interval_box()->setValue(25);
  tp->warmup_box()->setValue(10);
  tp->lr_box()->setValue(lr);
  w.samples_panel()->every_box()->setValue(100);
  tp->start_button()->click();
  return wait_until([&] { return w.last_summary().has_value(); }, 600'000);
}
}  // namespace

int main(int argc, char** argv) {
  qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QApplication::setStyle(QStyleFactory::create("Fusion"));
  const QString out = argc > 1 ? QString::fromLocal8Bit(argv[1]) : QString("docs/screenshots");
  QDir().mkpath(out);
  QTemporaryDir db_dir;
  bl::MainWindow w("gpt-tiny", (db_dir.path() + "/experiments.db").toStdString());
  w.resize(1440, 900);
  w.show();
  bool ok = save(w, out + "/composer.png");
  // A hybrid from the zoo: Mamba-2 / attention layers with MoE in every other one,
  // the attention + MoE layer selected so its own fields show.
  ok = w.arch_panel()->load_preset_model("jamba-tiny") && ok;
  w.arch_panel()->select_layers(3, 3);
  ok = save(w, out + "/composer_hybrid.png") && ok;
  ok = w.arch_panel()->load_preset_model("gpt-tiny") && ok;

  ok = train(w, 150, 2e-3) && ok;
  ok = train(w, 300, 1e-3) && ok;
  w.samples_panel()->generate_button()->click();
  wait_until([&] { return w.samples_panel()->sample_count() >= 4; }, 60'000);
  QCoreApplication::processEvents();

  w.tabs()->setCurrentWidget(w.charts());
  w.charts()->redraw_now();
  w.charts()->loss_plot()->show_readout_at(200);
  ok = save(w, out + "/charts.png") && ok;
  w.charts()->loss_plot()->show_readout_at(-1e9);  // hides it again (outside the plot)

  w.tabs()->setCurrentWidget(w.samples_panel());
  ok = save(w, out + "/samples.png") && ok;

  bl::RunBrowser* b = w.browser();
  b->refresh();
  w.tabs()->setCurrentWidget(b);
  b->select_runs(b->visible_ids());
  b->charts()->redraw_now();
  ok = save(w, out + "/runs_compare.png") && ok;
  b->compare_tabs()->setCurrentIndex(1);
  ok = save(w, out + "/runs_diff.png") && ok;

  // A QLoRA fine-tune of the second run: the Fine-tune group with its live
  // trainable count, then the browser's lineage columns.
  bl::TrainingPanel* tp = w.training_panel();
  tp->set_finetune_enabled(true);
  ok = tp->select_finetune_base(w.live_run_id()) && ok;
  tp->rank_box()->setValue(8);
  tp->target_box("o")->setChecked(true);
  tp->quantize_box()->setCurrentText("nf4");
  w.tabs()->setCurrentWidget(w.arch_panel());
  ok = save(w, out + "/finetune.png") && ok;
  ok = train(w, 100, 2e-3) && ok;
  b->refresh();
  w.tabs()->setCurrentWidget(b);
  b->select_runs({w.live_run_id()});
  b->compare_tabs()->setCurrentIndex(0);
  b->charts()->redraw_now();
  ok = save(w, out + "/runs_lineage.png") && ok;
  return ok ? 0 : 1;
}
