// PlotView and ChartsPanel: bounded drawing of 100k-point series with spikes
// kept, zoom re-decimation, frame time, EMA smoothing, log scale, hover
// readout, x-axis modes and stable run colours.
#include <QCheckBox>
#include <QComboBox>
#include <QElapsedTimer>
#include <QLabel>
#include <QLogValueAxis>
#include <QSlider>
#include <QTest>
#include <cmath>

#include "plot/charts_panel.h"
#include "plot/plot_view.h"

using namespace bl;

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
    c.smoothing_slider()->setValue(0);
    QCOMPARE(loss->smoothing(), 0.0);
    c.log_box()->setChecked(true);
    QVERIFY(loss->log_y() && c.lr_plot()->log_y());
    QCOMPARE(run_color(3), run_color(13));  // stable palette by id
    QVERIFY(run_color(3) != run_color(4));
  }
};

QTEST_MAIN(PlotTest)
#include "gui_plot_test.moc"
