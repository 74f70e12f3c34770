// The Heatmaps tab: per-layer diagnostics and per-expert MoE load of a
// stored run as row x step heatmaps. The families and their row order, the
// cells equal the stored values, the hover readout, flagged experts, and a
// run trained in the workbench with diagnostics on.
#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>

#include "inspect/heatmap_data.h"
#include "inspect/heatmap_panel.h"
#include "inspect/heatmap_view.h"
#include "main_window.h"
#include "samples/samples_panel.h"
#include "store/experiment_store.h"
#include "training/training_panel.h"

using namespace bl;

namespace {

/// A finished run with diag/grad_norm for 3 layer groups and the embedding
/// every 10 steps (value = layer + step / 100), and MoE load of 4 experts in
/// layer 0 every step: expert 3 dead, expert 0 overloaded.
int64_t write_run(ExperimentStore& s) {
  RunRecord r;
  r.name = "diag run";
  r.preset = "gpt-tiny";
  r.dataset_path = "/data/tiny.txt";
  const int64_t id = s.create_run(r);
  for (int step = 0; step < 50; ++step) {
    const double wall = 1'700'000'000 + step;
    if (step % 10 == 9) {
      for (int l : {0, 1, 2, 10})
        s.log_metric(id, step, wall, "diag/grad_norm/layers." + std::to_string(l),
                     l + step / 100.0);
      s.log_metric(id, step, wall, "diag/grad_norm/embed_tokens", 0.5);
      s.log_metric(id, step, wall, "diag/time_ms", 1.0);
    }
    const double load[4] = {0.6, 0.2, 0.2, 0.0};
    for (int e = 0; e < 4; ++e)
      s.log_metric(id, step, wall, "moe_load/layer0/expert" + std::to_string(e), load[e]);
    s.log_metric(id, step, wall, "loss", 3.0);
  }
  s.finish_run(id, RunStatus::kCompleted, {});
  s.flush();
  return id;
}

}  // namespace

class HeatmapTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db() const { return (dir_.path() + "/experiments.db").toStdString(); }

 private slots:
  void families_in_natural_order() {
    const auto f = heatmap_families({"diag/grad_norm/layers.10", "diag/grad_norm/embed_tokens",
                                     "diag/grad_norm/layers.2", "diag/time_ms", "loss",
                                     "moe_load/layer1/expert10", "moe_load/layer1/expert9",
                                     "diag/eff_rank/layers.0.attention.q_proj"});
    QCOMPARE(f.size(), size_t(3));
    QCOMPARE(f[0].name, std::string("diag/eff_rank"));
    QCOMPARE(f[1].name, std::string("diag/grad_norm"));
    QCOMPARE(f[1].rows, (std::vector<std::string>{"layers.2", "layers.10", "embed_tokens"}));
    QCOMPARE(f[2].name, std::string("moe_load/layer1"));
    QCOMPARE(f[2].rows, (std::vector<std::string>{"expert9", "expert10"}));
  }

  void cells_equal_the_stored_values() {
    int64_t id = 0;
    {
      ExperimentStore s(db());
      id = write_run(s);
    }
    HeatmapPanel p(db());
    p.resize(900, 500);
    p.show();
    QVERIFY(p.select_run(id));
    QVERIFY(p.select_family("diag/grad_norm"));
    const HeatmapGrid& g = p.view()->grid();
    QCOMPARE(g.rows, (std::vector<std::string>{"layers.0", "layers.1", "layers.2", "layers.10",
                                               "embed_tokens"}));
    QCOMPARE(g.steps, (std::vector<int64_t>{9, 19, 29, 39, 49}));
    ExperimentStore r = ExperimentStore::open_readonly(db());
    for (size_t row = 0; row < g.rows.size(); ++row) {
      const MetricSeries m = r.metrics(id, "diag/grad_norm/" + g.rows[row]);
      QCOMPARE(m.size(), g.steps.size());
      for (size_t c = 0; c < g.steps.size(); ++c) QCOMPARE(g.at(row, c), m.values[c]);
    }
    QCOMPARE(g.min, 0.09);
    QCOMPARE(g.max, 10.49);
    // The readout under the mouse: the cell of layers.2 at the third column (step 30, 1-based).
    const QRect cr = p.view()->cells_rect();
    const QPoint at(cr.left() + int(cr.width() * 2.5 / 5), cr.top() + int(cr.height() * 2.5 / 5));
    QCOMPARE(p.view()->readout_at(at), QString("layers.2, step 30: 2.29"));
    QTest::mouseMove(p.view(), at);
    QTRY_COMPARE(p.readout()->text(), QString("layers.2, step 30: 2.29"));
    // Colours follow the scale: the largest value is viridis's yellow end.
    QCOMPARE(p.view()->color_of(10.49), QColor(253, 231, 37));
    p.log_box()->setChecked(true);
    QCOMPARE(p.view()->color_of(10.49), QColor(253, 231, 37));
    QVERIFY(p.view()->color_of(1.0) != p.view()->color_of(2.0));
    QVERIFY(p.flags_label()->isHidden());
    p.view()->grab().save(dir_.path() + "/heatmap.png");
  }

  void moe_experts_are_flagged() {
    int64_t id = 0;
    {
      ExperimentStore s(db());
      id = write_run(s);
    }
    HeatmapPanel p(db());
    p.show();
    QVERIFY(p.select_run(id));
    QVERIFY(p.select_family("moe_load/layer0"));
    QCOMPARE(p.view()->grid().rows.size(), size_t(4));
    QCOMPARE(flag_experts(p.view()->grid()), (std::vector<int>{1, 0, 0, -1}));
    QVERIFY(!p.flags_label()->isHidden());
    QVERIFY2(
        p.flags_label()->text().contains("Dead") && p.flags_label()->text().contains("expert3"),
        qPrintable(p.flags_label()->text()));
    QVERIFY2(p.flags_label()->text().contains("Overloaded") &&
                 p.flags_label()->text().contains("expert0"),
             qPrintable(p.flags_label()->text()));
  }

  // Through the window: a run trained with diagnostics every 2 steps shows
  // its per-layer gradient norms in the Heatmaps tab.
  void a_workbench_run_with_diagnostics() {
    const std::string db2 = (dir_.path() + "/workbench.db").toStdString();
    MainWindow w("gpt-tiny", db2);
    w.resize(1200, 800);
    w.show();
    w.samples_panel()->every_box()->setValue(0);
    Preset p = load_preset("gpt-tiny");
    p.model.n_layers = 2;
    p.model.block.d_model = 32;
    p.model.block.d_ff = 64;
    p.train.batch_size = 2;
    p.train.seq_len = 16;
    p.train.max_steps = 6;
    p.train.eval_interval = 0;
    p.train.warmup_steps = 0;
    p.train.threads = 1;
    p.train.diagnostics_interval = 2;
    w.load_preset(p, "gpt-tiny");
    w.training_panel()->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    w.tabs()->setCurrentWidget(w.heatmap_panel());
    HeatmapPanel* hp = w.heatmap_panel();
    QVERIFY(hp->select_run(w.live_run_id()));
    QVERIFY(hp->select_family("diag/grad_norm"));
    const HeatmapGrid& g = hp->view()->grid();
    QVERIFY(g.rows.size() >= 2);
    QCOMPARE(g.rows[0], std::string("layers.0"));
    QCOMPARE(g.rows[1], std::string("layers.1"));
    QCOMPARE(g.steps.size(), size_t(3));  // steps 2, 4, 6 (1-based)
    QVERIFY(g.max > 0);
  }
};

QTEST_MAIN(HeatmapTest)
#include "gui_heatmap_test.moc"
