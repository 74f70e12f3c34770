// PlotView and ChartsPanel: bounded drawing of 100k-point series with spikes
// kept, zoom re-decimation, frame time, EMA smoothing, log scale, hover
// readout, x-axis modes, distinct run colours, the shared legend and
// PNG / SVG export of the plots alone.
#include <QCheckBox>
#include <QComboBox>
#include <QElapsedTimer>
#include <QFile>
#include <QImage>
#include <QLabel>
#include <QLogValueAxis>
#include <QSignalSpy>
#include <QSlider>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>
#include <cmath>
#include <set>

#include "browser/run_loader.h"
#include "core/model.h"
#include "core/presets.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "run/launcher.h"
#include "store/experiment_store.h"

using namespace bl;

namespace {

// Adds run `id` with 50 steps and two evals.
void fill(ChartsPanel& c, int64_t id, const QString& name) {
  RunCurves r;
  r.id = id;
  r.name = name;
  for (int i = 0; i < 50; ++i) {
    StepMetrics m;
    m.step = i;
    m.loss = 3.0 + 0.1 * double(id) - 0.03 * i;
    m.tokens_seen = 256 * (i + 1);
    m.wall_time_s = 0.1 * (i + 1);
    m.tokens_per_sec = 1000 + 10 * double(id);
    m.grad_norm = 1 + 0.1 * double(id);
    m.learning_rate = 1e-3;
    r.add(m);
  }
  r.evals = {{24, 2.5}, {49, 2.0}};
  c.set_run(std::move(r));
}

}  // namespace

class PlotTest : public QObject {
  Q_OBJECT

 private slots:
  void hundred_thousand_points_bounded_and_fluid() {
    PlotView v("loss");
    v.resize(900, 450);
    v.show();
    QVERIFY(QTest::qWaitForWindowExposed(&v));
    const int a = v.add_series("run 1", Qt::blue), b = v.add_series("run 2", Qt::red);
    const int n = 100'000;
    QList<QPointF> pa, pb;
    for (int i = 0; i < n; ++i) {
      pa.append(QPointF(i, 2 + std::sin(i * 0.01)));
      pb.append(QPointF(i, 3 + std::cos(i * 0.003)));
    }
    pa[61'234].setY(40.0);  // a one-step spike
    v.set_points(a, pa);
    v.set_points(b, pb);
    v.set_smoothing(0.6);
    QElapsedTimer t;
    t.start();
    v.redraw_now();
    const QPixmap frame = v.grab();
    const qint64 ms = t.elapsed();
    QVERIFY(!frame.isNull());
    const int w = v.plot_width();
    QVERIFY(w > 100);
    // raw + smoothed line per series, each <= 4 points per pixel column
    QVERIFY2(v.drawn_count(a) <= 2 * 4 * w, qPrintable(QString::number(v.drawn_count(a))));
    QVERIFY(v.total_drawn() <= 4 * 4 * w);
    QVERIFY(v.total_drawn() >= 2 * w);
    QCOMPARE(v.point_count(a), qsizetype(n));
    qInfo("100k x 2 series: %lld points drawn, redraw + repaint %lld ms",
          (long long)v.total_drawn(), ms);
    QVERIFY2(ms < 150, qPrintable(QString("frame took %1 ms").arg(ms)));

    // The spike is drawn (raw line) and the readout at it reports it.
    QVERIFY(v.readout_at(61'234).front().contains("raw 40"));
    // Zoom: only the range is decimated, again bounded, spike still there.
    v.zoom_x(60'000, 62'000);
    v.redraw_now();
    QVERIFY(v.drawn_count(a) <= 2 * 4 * w);
    QVERIFY(v.drawn_count(a) > 0);
    v.reset_zoom();
    QVERIFY(!v.zoom().has_value());
  }

  void smoothing_is_a_debiased_ema() {
    PlotView v("x");
    const int s = v.add_series("s", Qt::blue);
    v.set_smoothing(0.5);
    v.append(s, 1, 2.0);
    v.append(s, 2, 4.0);
    // debiased EMA: (0.5*2*0.5 + 0.5*4) / (1 - 0.25) = 3.333...
    QVERIFY(v.readout_at(2).front().startsWith("s: 3.3333 (raw 4)"));
    v.set_smoothing(0);  // raw only
    QVERIFY(v.readout_at(2).front().startsWith("s: 4 @ 2"));
    v.set_smoothing(0.5);  // recomputed over the stored points
    QVERIFY(v.readout_at(2).front().startsWith("s: 3.3333"));
  }

  void log_scale_and_hover_readout() {
    PlotView v("loss");
    v.resize(700, 400);
    v.show();
    QVERIFY(QTest::qWaitForWindowExposed(&v));
    const int a = v.add_series("train", Qt::blue);
    const int e = v.add_series("eval", Qt::red, PlotView::Style{.markers = true, .smooth = false});
    for (int i = 0; i < 100; ++i) v.append(a, i, i == 50 ? 0.0 : 10.0 / (i + 1));
    v.append(e, 49, 0.3);
    v.append(e, 99, 0.2);
    v.set_log_y(true);
    v.redraw_now();
    QVERIFY(v.log_y());
    QCOMPARE(v.drawn_count(a), qsizetype(99));  // the zero cannot be drawn on a log axis
    v.set_log_y(false);
    v.redraw_now();
    // A loss between 2.3 and 4.6 in log scale still gets labelled ticks (at
    // powers of the axis base inside the range); base 10 would label none.
    PlotView narrow("loss");
    const int n = narrow.add_series("train", Qt::blue);
    for (int i = 0; i < 50; ++i) narrow.append(n, i, 4.6 - 2.3 * i / 49.0);
    narrow.set_log_y(true);
    narrow.redraw_now();
    auto* ax = qobject_cast<QLogValueAxis*>(narrow.y_axis());
    QVERIFY(ax);
    int labelled = 0;
    for (int k = -200; k <= 200; ++k) {
      const double t = std::pow(ax->base(), k);
      if (t >= ax->min() && t <= ax->max()) ++labelled;
    }
    QVERIFY2(labelled >= 4, qPrintable(QString("%1 labelled ticks").arg(labelled)));
    v.redraw_now();
    QCOMPARE(v.drawn_count(a), qsizetype(100));  // smoothing 0: raw line only
    // Hover at x = 60 lists both series, eval at its nearest point.
    v.show_readout_at(60);
    auto* label = v.findChild<QLabel*>("readout");
    QVERIFY(label && label->isVisible());
    QVERIFY(label->text().contains("train:"));
    QVERIFY(label->text().contains("eval: 0.3 @ 49"));
  }

  void palette_gives_distinct_colours() {
    // Pairwise distance in RGB: the 12 named colours are far apart, and every
    // colour up to 40 differs from all before it.
    auto dist = [](const QColor& a, const QColor& b) {
      return std::hypot(a.red() - b.red(), a.green() - b.green(), a.blue() - b.blue());
    };
    for (int i = 0; i < 40; ++i)
      for (int j = 0; j < i; ++j) {
        const double d = dist(qualitative_color(i), qualitative_color(j));
        QVERIFY2(d > (i < 12 ? 60 : 8), qPrintable(QString("%1 vs %2: %3").arg(i).arg(j).arg(d)));
      }

    // Ids that collided in the old id-modulo palette (3, 13, 23) and its
    // red / brown neighbours (4, 6) all get different colours.
    ChartsPanel c;
    c.resize(1000, 600);
    const std::vector<int64_t> ids = {3, 13, 23, 4, 6, 5};
    for (int64_t id : ids) fill(c, id, QString("a-long-run-name-for-%1-seeds-and-more").arg(id));
    std::set<QRgb> seen;
    for (int64_t id : ids) seen.insert(c.color_of(id).rgb());
    QCOMPARE(int(seen.size()), int(ids.size()));
    // A run keeps its colour when another leaves; a newcomer takes the freed one.
    const QColor kept = c.color_of(13), freed = c.color_of(23);
    c.remove_run(23);
    QVERIFY(!c.color_of(23).isValid());
    QCOMPARE(c.color_of(13), kept);
    fill(c, 99, "new");
    QCOMPARE(c.color_of(99), freed);
  }

  void many_runs_share_one_readable_legend() {
    ChartsPanel c;
    c.resize(1000, 600);
    c.show();
    QVERIFY(QTest::qWaitForWindowExposed(&c));
    fill(c, 1, "solo");
    QVERIFY(c.legend()->isHidden());  // one run: the charts' own legends
    QVERIFY(c.loss_plot()->legend_visible());
    for (int64_t id = 2; id <= 6; ++id) fill(c, id, QString("run-%1-with-a-long-name").arg(id));
    QVERIFY(!c.legend()->isHidden());
    for (PlotView* p : c.plots()) QVERIFY(!p->legend_visible());
    const QString text = c.legend()->text();
    for (int64_t id = 1; id <= 6; ++id) {
      QVERIFY2(text.contains(QString("#%1&nbsp;").arg(id)), qPrintable(text));
      QVERIFY(text.contains(c.color_of(id).name()));
    }
    QVERIFY(text.contains("run-4-with-a-long-name"));
    c.clear();
    QVERIFY(c.legend()->isHidden());
  }

  void export_writes_the_plots_alone() {
    ChartsPanel c;
    c.resize(1000, 600);
    c.show();
    QVERIFY(QTest::qWaitForWindowExposed(&c));
    fill(c, 1, "alpha");
    fill(c, 2, "beta");
    QTemporaryDir dir;
    const QString svg = dir.filePath("charts.svg"), png = dir.filePath("charts.png");
    QString error;
    QVERIFY2(c.export_image(svg, QSize(1200, 750), &error), qPrintable(error));
    QFile f(svg);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QString doc = QString::fromUtf8(f.readAll());
    QVERIFY(doc.contains("<svg"));
    QVERIFY(doc.contains("width=\"1200") || doc.contains("viewBox=\"0 0 1200 750"));
    QVERIFY(doc.contains("Gradient norm"));                        // chart titles are there...
    QVERIFY(doc.contains("#1 alpha") && doc.contains("#2 beta"));  // ...and the legend
    QVERIFY(doc.contains("<polyline") || doc.contains("<path"));   // the curves
    for (const char* control : {"Reset zoom", "Smoothing", "log scale", "X axis"})
      QVERIFY2(!doc.contains(control), control);  // no widgets

    QVERIFY2(c.export_image(png, QSize(1200, 750), &error), qPrintable(error));
    QImage img(png);
    QCOMPARE(img.size(), QSize(1200, 750));  // the chosen size, not the widget's 1000x600
    // The curves are drawn in the runs' colours.
    int coloured = 0;
    const QColor want = c.color_of(2);
    for (int y = 0; y < img.height(); ++y)
      for (int x = 0; x < img.width(); ++x) {
        const QColor px = img.pixelColor(x, y);
        coloured += std::abs(px.red() - want.red()) + std::abs(px.green() - want.green()) +
                        std::abs(px.blue() - want.blue()) <
                    30;
      }
    QVERIFY2(coloured > 200, qPrintable(QString::number(coloured)));
    // The on-screen chart is restored to its own size afterwards.
    c.redraw_now();
    QVERIFY(c.loss_plot()->plot_width() < 600);
    QVERIFY(!c.export_image(dir.filePath("x.png"), QSize(10, 10), &error));
  }

  void charts_panel_x_axes_and_colours() {
    ChartsPanel c;
    c.resize(1000, 600);
    c.add_run(3, "a");
    std::vector<StepMetrics> steps;
    for (int i = 0; i < 10; ++i) {
      StepMetrics m;
      m.step = i;
      m.loss = 3.0 - 0.1 * i;
      m.tokens_seen = 256 * (i + 1);
      m.wall_time_s = 0.5 * (i + 1);
      m.tokens_per_sec = 1000;
      m.grad_norm = 1;
      m.learning_rate = 1e-3;
      steps.push_back(m);
    }
    c.append_steps(3, steps);
    c.append_evals(3, {{4, 2.5}});
    PlotView* loss = c.loss_plot();
    QVERIFY(loss->readout_at(5).front().contains("@ 5"));  // x = steps taken
    c.x_axis_box()->setCurrentIndex(int(ChartsPanel::XAxis::kTokens));
    QCOMPARE(c.x_axis(), ChartsPanel::XAxis::kTokens);
    QVERIFY(loss->readout_at(1280).front().contains("@ 1280"));
    QVERIFY(loss->readout_at(1280)[1].contains("eval: 2.5 @ 1280"));  // eval after step 5
    c.x_axis_box()->setCurrentIndex(int(ChartsPanel::XAxis::kWallTime));
    QVERIFY(loss->readout_at(2.5).front().contains("@ 2.5"));
    // Training FLOPs: tokens seen times the run's FLOPs per token (1000 here):
    // step 5's 1,280 tokens are 1.28 MFLOPs.
    c.set_flops_per_token(3, 1000.0);
    c.x_axis_box()->setCurrentIndex(int(ChartsPanel::XAxis::kFlops));
    QCOMPARE(c.x_axis(), ChartsPanel::XAxis::kFlops);
    QCOMPARE(c.x_axis_box()->currentText(), QString("training FLOPs"));
    QVERIFY2(loss->readout_at(1.28e6).front().contains("@ 1.28e+06"),
             qPrintable(loss->readout_at(1.28e6).front()));
    QVERIFY(loss->readout_at(1.28e6)[1].contains("eval: 2.5"));
    c.set_flops_per_token(3, 2000.0);  // a known value changes the axis at once
    QVERIFY2(loss->readout_at(2.56e6).front().contains("@ 2.56e+06"),
             qPrintable(loss->readout_at(2.56e6).front()));
    c.smoothing_slider()->setValue(0);
    QCOMPARE(loss->smoothing(), 0.0);
    c.log_box()->setChecked(true);
    QVERIFY(loss->log_y() && c.lr_plot()->log_y());
    QCOMPARE(c.color_of(3), qualitative_color(0));  // the only run: the first colour
  }

  // A stored run's FLOPs per token: its summary's when training finished,
  // else counted on its model config at its seq_len (a running or killed run).
  void stored_runs_know_their_flops_per_token() {
    const Preset p = load_preset("gpt-tiny");
    RunRecord run;
    run.model_config = model_config_to_json(p.model);
    run.train_config = {{"seq_len", 64}};
    LanguageModel model(p.model);
    const double want = model.flops_per_token(64);
    QVERIFY(want > 0);
    QCOMPARE(run_flops_per_token(run), want);
    run.summary = {{"flops_per_token", 1234.0}};
    QCOMPARE(run_flops_per_token(run), 1234.0);
    run.summary = nullptr;
    run.model_config = {{"block", {{"d_model", -3}}}};  // unreadable: no FLOPs axis, no throw
    QCOMPARE(run_flops_per_token(run), 0.0);
  }

  void any_logged_metric_gets_a_chart() {
    // A run whose steps carry a MoE loss every step and a diagnostic every 5th.
    QTemporaryDir dir;
    const std::string db = dir.filePath("e.db").toStdString();
    int64_t id = 0;
    {
      ExperimentStore store(db);
      RunRecord rec;
      rec.name = "moe";
      id = store.create_run(rec);
      for (int i = 0; i < 20; ++i) {
        const double w = 0.1 * (i + 1);
        store.log_metric(id, i, w, "loss", 3.0 - 0.05 * i);
        store.log_metric(id, i, w, "learning_rate", 1e-3);
        store.log_metric(id, i, w, "grad_norm", 1.0);
        store.log_metric(id, i, w, "tokens_per_sec", 1000);
        store.log_metric(id, i, w, "tokens_seen", 64.0 * (i + 1));
        store.log_metric(id, i, w, "step_time_ms", 5.0 + i);
        store.log_metric(id, i, w, "moe_aux_loss", 0.01 * (i + 1));
        if (i % 5 == 4) store.log_metric(id, i, w, "weight_norm/layer0", 10.0 + i);
      }
    }
    ExperimentStore store = ExperimentStore::open_readonly(db);
    RunCurves curves = load_run_curves(store, *store.get_run(id));
    QCOMPARE(curves.size(), size_t(20));
    QCOMPARE(curves.extra.at("moe_aux_loss").size(), size_t(20));
    QCOMPARE(curves.extra.at("weight_norm/layer0").size(), size_t(4));
    QCOMPARE(curves.extra.at("step_time_ms")[3].second, 8.0);

    ChartsPanel c;
    c.resize(1000, 900);
    c.show();
    QVERIFY(QTest::qWaitForWindowExposed(&c));
    c.set_run(std::move(curves));
    QCOMPARE(c.available_metrics(),
             QStringList({"moe_aux_loss", "step_time_ms", "weight_norm/layer0"}));
    QSignalSpy changed(&c, &ChartsPanel::metric_charts_changed);
    c.add_metric_chart("moe_aux_loss");
    c.add_metric_chart("weight_norm/layer0");
    c.add_metric_chart("moe_aux_loss");  // already shown: no second chart
    QCOMPARE(changed.count(), 2);
    QCOMPARE(c.metric_charts(), QStringList({"moe_aux_loss", "weight_norm/layer0"}));
    QCOMPARE(c.plots().size(), size_t(6));
    PlotView* aux = c.metric_plot("moe_aux_loss");
    QVERIFY(aux);
    QCOMPARE(aux->point_count(0), qsizetype(20));
    QCOMPARE(c.metric_plot("weight_norm/layer0")->point_count(0), qsizetype(4));
    QVERIFY(aux->readout_at(10).front().contains("@ 10"));  // x = steps taken, as the loss
    // Live steps reach the added charts; the fixed controls drive them too.
    StepMetrics m;
    m.step = 20;
    m.loss = 2.0;
    m.extra = {{"moe_aux_loss", 0.5}};
    c.append_steps(id, {m});
    QCOMPARE(aux->point_count(0), qsizetype(21));
    c.log_box()->setChecked(true);
    QVERIFY(aux->log_y());
    c.x_axis_box()->setCurrentIndex(int(ChartsPanel::XAxis::kTokens));
    QVERIFY(aux->readout_at(640).front().contains("@ 640"));  // tokens after step 10
    // The export holds every chart.
    const QString png = dir.filePath("six.png");
    QString error;
    QVERIFY2(c.export_image(png, QSize(1200, 1100), &error), qPrintable(error));
    QCOMPARE(QImage(png).size(), QSize(1200, 1100));
    // A chart's × removes it; a saved list restores them.
    QWidget* frame = c.findChild<QWidget*>("chart_weight_norm/layer0");
    QVERIFY(frame);
    QToolButton* close = frame->findChild<QToolButton*>("close_chart");
    QVERIFY(close);
    QTest::mouseClick(close, Qt::LeftButton);
    QCOMPARE(c.metric_charts(), QStringList({"moe_aux_loss"}));
    c.set_metric_charts({"step_time_ms", "moe_aux_loss"});
    QCOMPARE(c.metric_charts(), QStringList({"step_time_ms", "moe_aux_loss"}));
    QCOMPARE(c.metric_plot("step_time_ms")->point_count(0), qsizetype(21));
  }

  void launched_run_offers_diagnostics_and_system_charts() {
    // A real (tiny) launched run: its stored diag/ and sys/ metrics become charts.
    QTemporaryDir dir;
    RunSpec s;
    s.preset_name = "gpt-tiny";
    s.set = {"model.n_layers=2",      "model.block.d_model=32", "model.block.d_ff=64",
             "train.eval_interval=0", "train.eval_batches=1",   "train.diagnostics_interval=2"};
    s.train.max_steps = 4;
    s.train.warmup_steps = 0;
    s.train.batch_size = 2;
    s.train.seq_len = 16;
    s.train.threads = 1;
    s.data_path = dir.filePath("data.txt").toStdString();
    {
      QFile f(QString::fromStdString(s.data_path));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray(4000, 'a') + "bcdefgh\n");
    }
    s.db_path = dir.filePath("e.db").toStdString();
    auto run = launch_run(s);
    run->train();
    ExperimentStore store = ExperimentStore::open_readonly(s.db_path);
    RunCurves curves = load_run_curves(store, *store.get_run(run->run_id()));
    QCOMPARE(curves.extra.at("diag/grad_norm/layers.0").size(), size_t(2));  // steps 1 and 3
    ChartsPanel c;
    c.set_run(std::move(curves));
    const QStringList names = c.available_metrics();
    for (const char* n :
         {"diag/grad_norm/layers.0", "diag/weight_norm/layers.1", "diag/update_ratio/embed_tokens",
          "diag/eff_rank/layers.0.attention.q_proj", "sys/cpu_percent", "sys/rss_mb",
          "sys/threads"})
      QVERIFY2(names.contains(n), n);
    c.add_metric_chart("diag/update_ratio/layers.1");
    QCOMPARE(c.metric_plot("diag/update_ratio/layers.1")->point_count(0), qsizetype(2));
  }
};

QTEST_MAIN(PlotTest)
#include "gui_plot_test.moc"
