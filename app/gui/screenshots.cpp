// `blocklab-screenshots [OUT_DIR]`: renders every main view of the workbench
// offscreen and saves PNGs (docs/screenshots/ in the repo): the composer, the
// live charts and samples after a short real training run, and the run browser
// comparing two runs, a LoRA fine-tune's settings and the runs' lineage. Uses a
// temporary experiment database. `--quick` renders only what needs no
// training: the composer views (mamba2 editor, grouped errors, dark theme), and
// six runs of synthetic curves in the charts (shared legend) and its export,
// the Sweep dialog in Slurm mode after writing a job array (dry run), and run
// groups (three configs over five seeds of synthetic curves, grouped by config
// except seed: mean ± std bands and the groups table).
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QElapsedTimer>
#include <QLineEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSpinBox>
#include <QStyleFactory>
#include <QTabWidget>
#include <QTableView>
#include <QTemporaryDir>
#include <QThread>
#include <QUndoStack>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>

#include "arch/arch_panel.h"
#include "browser/run_browser.h"
#include "core/presets.h"
#include "inspect/heatmap_panel.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "samples/samples_panel.h"
#include "store/experiment_store.h"
#include "sweep/sweep_dialog.h"
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
/// Six runs of made-up loss curves (noisy exponential decay, different
/// rates): the shared legend and distinct colours with many runs.
void synthetic_runs(bl::ChartsPanel& c) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0, 0.04);
  const char* names[] = {"gpt-tiny lr 3e-3 seed 1", "gpt-tiny lr 3e-3 seed 2",
                         "llama-tiny swiglu",       "llama-tiny swiglu + qk-norm",
                         "mistral-tiny sliding 32", "jamba-tiny hybrid"};
  for (int r = 0; r < 6; ++r) {
    bl::RunCurves rc;
    rc.id = 11 + r;
    rc.name = names[r];
    for (int i = 0; i < 400; ++i) {
      bl::StepMetrics m;
      m.step = i;
      m.loss = 1.5 + 0.1 * r + 2.7 * std::exp(-i / (60.0 + 15 * r)) + noise(rng);
      m.tokens_seen = 512 * (i + 1);
      m.wall_time_s = 0.05 * (i + 1);
      m.tokens_per_sec = 9000 - 800 * r + 300 * noise(rng) / 0.04;
      m.grad_norm = 0.6 + 2.0 * std::exp(-i / 80.0) + std::abs(noise(rng));
      m.learning_rate = 1e-3 * std::min(1.0, (i + 1) / 20.0);
      m.step_time_ms = 1000.0 * 512 / m.tokens_per_sec;
      if (r == 5) m.extra = {{"moe_aux_loss", 0.02 + 0.05 * std::exp(-i / 50.0) + noise(rng) / 8}};
      rc.add(m);
      if ((i + 1) % 100 == 0) rc.evals.push_back({i, m.loss + 0.05});
    }
    c.set_run(std::move(rc));
  }
}

/// Three learning rates x five seeds of made-up runs in a store (one seed of
/// the highest rate stopped early): the run-groups view.
void synthetic_seed_runs(const std::string& db) {
  bl::ExperimentStore s(db);
  std::mt19937 rng(11);
  std::normal_distribution<double> noise(0, 1);
  const double lrs[] = {1e-3, 2e-3, 4e-3};
  for (int k = 0; k < 3; ++k)
    for (int seed = 1; seed <= 5; ++seed) {
      bl::Preset p = bl::load_preset("gpt-tiny");
      p.train.learning_rate = lrs[k];
      p.train.seed = seed;
      p.train.max_steps = 400;
      bl::RunRecord r;
      r.name = "gpt-tiny lr " +
               std::string(k == 0   ? "1e-3"
                           : k == 1 ? "2e-3"
                                    : "4e-3") +
               " seed " + std::to_string(seed);
      r.preset = "gpt-tiny";
      r.model_config = bl::model_config_to_json(p.model);
      r.train_config = bl::train_config_to_json(p.train);
      r.dataset_path = "data/tinyshakespeare.txt";
      const int64_t id = s.create_run(r);
      const int steps = k == 2 && seed == 4 ? 260 : 400;
      const double seed_shift = 0.05 * noise(rng) * (1 + 1.5 * k);  // higher lr: more seed spread
      double best = 1e9, tail = 0;
      for (int i = 0; i < steps; ++i) {
        const double wall = 1'700'000'000 + 0.05 * i;
        const double loss = 1.55 - 0.08 * k + 2.6 * std::exp(-i / (110.0 - 25 * k)) +
                            seed_shift * (1 - std::exp(-i / 80.0)) + 0.035 * noise(rng);
        const double lr = lrs[k] * std::min(1.0, (i + 1) / 20.0) *
                          (0.55 + 0.45 * std::cos(3.14159265 * i / 400.0));
        s.log_metric(id, i, wall, "loss", loss);
        s.log_metric(id, i, wall, "learning_rate", lr);
        s.log_metric(id, i, wall, "grad_norm",
                     0.5 + (1.5 + k) * std::exp(-i / 90.0) + 0.08 * std::abs(noise(rng)));
        s.log_metric(id, i, wall, "tokens_per_sec", 9000 - 40 * seed + 40 * noise(rng));
        s.log_metric(id, i, wall, "step_time_ms", 57);
        s.log_metric(id, i, wall, "tokens_seen", 512.0 * (i + 1));
        if ((i + 1) % 50 == 0) {
          const double eval = loss + 0.06 + 0.01 * noise(rng);
          s.log_eval(id, i, "eval_loss", eval);
          best = std::min(best, eval);
        }
        if (i >= steps - 10) tail += loss / 10;
      }
      s.finish_run(id, steps == 400 ? bl::RunStatus::kCompleted : bl::RunStatus::kStopped,
                   {{"best_val_loss", best}, {"final_train_loss", tail}, {"tokens_per_sec", 9000}});
    }
  s.flush();
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
  const bool quick = QApplication::arguments().contains("--quick");
  bool ok = quick || save(w, out + "/composer.png");
  // A hybrid from the zoo: Mamba-2 / attention layers with MoE in every other one,
  // the attention + MoE layer selected so its own fields show.
  ok = w.arch_panel()->load_preset_model("jamba-tiny") && ok;
  w.arch_panel()->select_layers(3, 3);
  ok = save(w, out + "/composer_hybrid.png") && ok;
  // A Mamba-2 layer: its editor fields unclipped.
  w.arch_panel()->select_layers(0, 0);
  ok = save(w, out + "/composer_mamba2.png") && ok;
  // One bad edit (d_model 130): the repeated per-layer errors grouped, the Run
  // panel keeping its width.
  w.arch_panel()->d_model_box()->setValue(130);
  ok = save(w, out + "/composer_errors.png") && ok;
  w.arch_panel()->undo_stack()->undo();
  w.set_dark_theme(true);
  ok = save(w, out + "/composer_dark.png") && ok;
  {
    bl::ChartsPanel c;
    c.resize(1200, 760);
    c.show();
    c.set_dark(true);
    synthetic_runs(c);
    c.redraw_now();
    ok = save(c, out + "/charts_dark.png") && ok;
    c.set_dark(false);
    w.set_dark_theme(false);
    c.redraw_now();
    ok = save(c, out + "/charts_many_runs.png") && ok;
    QString error;
    ok = c.export_image(out + "/charts_export.png", QSize(1600, 1000), &error) && ok;
    ok = c.export_image(out + "/charts_export.svg", QSize(1600, 1000), &error) && ok;
    // "Add chart": any other logged metric below the four.
    c.add_metric_chart("step_time_ms");
    c.add_metric_chart("moe_aux_loss");
    c.resize(1200, 1000);
    QCoreApplication::processEvents();  // lay the new charts out before drawing them
    c.redraw_now();
    ok = save(c, out + "/charts_metrics.png") && ok;
    std::printf("wrote %s/charts_export.png and .svg %s\n", qPrintable(out), qPrintable(error));
  }
  {
    // The Sweep dialog in Slurm mode, its scripts written (dry run) to a
    // temporary shared folder: the fields of --slurm and the result.
    bl::SweepDialog d((db_dir.path() + "/experiments.db").toStdString());
    d.resize(760, 680);
    d.mode_box()->setCurrentIndex(1);
    d.partition_edit()->setText("cpu");
    d.time_edit()->setText("00:30:00");
    d.max_parallel_box()->setValue(4);
    d.task_threads_box()->setValue(2);
    d.shared_edit()->setText(db_dir.path() + "/shared/lr-seeds");
    d.show();
    ok = d.start() && ok;
    ok = save(d, out + "/sweep_slurm.png") && ok;
  }
  {
    // Run groups: 15 runs, three configs over five seeds, grouped by config
    // except seed; every run compared, drawn as three means with ±std bands.
    const std::string db = (db_dir.path() + "/groups.db").toStdString();
    synthetic_seed_runs(db);
    bl::RunBrowser b(db);
    b.resize(1440, 980);
    b.show();
    b.set_grouping({.by = bl::GroupSpec::By::kConfigExceptSeed});
    b.select_runs(b.visible_ids());
    b.charts()->set_smoothing(0.6);
    QCoreApplication::processEvents();
    b.charts()->redraw_now();
    ok = save(b, out + "/run_groups.png") && ok;
  }
  {
    // Heatmaps: a synthetic 8-layer MoE run's per-layer gradient norms every
    // 10 steps and one layer's expert load, expert 5 fading out.
    const std::string db = (db_dir.path() + "/heatmaps.db").toStdString();
    int64_t id = 0;
    {
      bl::ExperimentStore st(db);
      bl::RunRecord r;
      r.name = "moe-tiny diagnostics";
      r.preset = "moe-tiny";
      r.dataset_path = "/data/tinyshakespeare.txt";
      id = st.create_run(r);
      std::mt19937 rng(7);
      std::normal_distribution<double> noise(0.0, 1.0);
      for (int step = 0; step < 400; ++step) {
        const double wall = 1'700'000'000 + step;
        if (step % 10 == 9)
          for (int l = 0; l < 8; ++l)
            st.log_metric(
                id, step, wall, "diag/grad_norm/layers." + std::to_string(l),
                (0.4 + 0.12 * l) * std::exp(-step / 150.0) + 0.05 + 0.01 * std::abs(noise(rng)));
        for (int e = 0; e < 8; ++e) {
          double load = 0.125 + 0.02 * noise(rng);
          if (e == 5) load *= std::exp(-step / 60.0);
          if (e == 2) load *= 1.0 + step / 200.0;
          st.log_metric(id, step, wall, "moe_load/layer0/expert" + std::to_string(e),
                        std::max(0.0, load));
        }
      }
      st.finish_run(id, bl::RunStatus::kCompleted, {});
      st.flush();
    }
    bl::HeatmapPanel h(db);
    h.resize(1100, 460);
    h.show();
    ok = h.select_run(id) && h.select_family("diag/grad_norm") && ok;
    ok = save(h, out + "/heatmap_diagnostics.png") && ok;
    ok = h.select_family("moe_load/layer0") && ok;
    ok = save(h, out + "/heatmap_moe.png") && ok;
  }
  ok = w.arch_panel()->load_preset_model("gpt-tiny") && ok;
  if (quick) return ok ? 0 : 1;

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
  b->set_config_columns({"train.learning_rate", "model.n_layers"});  // config fields as columns
  w.tabs()->setCurrentWidget(b);
  b->select_runs(b->visible_ids());
  b->charts()->redraw_now();
  ok = save(w, out + "/runs_compare.png") && ok;
  b->compare_tabs()->setCurrentIndex(1);
  ok = save(w, out + "/runs_diff.png") && ok;
  // The config columns, at the right end of the table.
  b->table()->horizontalScrollBar()->setValue(b->table()->horizontalScrollBar()->maximum());
  ok = save(w, out + "/runs_columns.png") && ok;
  b->table()->horizontalScrollBar()->setValue(0);

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
