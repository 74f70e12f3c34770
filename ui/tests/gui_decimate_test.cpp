// decimate_m4: bounded output, spikes and end points kept, x order, short
// series passed through.
#include <QTest>
#include <cmath>

#include "plot/decimate.h"

class DecimateTest : public QObject {
  Q_OBJECT

 private slots:
  void short_series_pass_through() {
    QList<QPointF> pts = {{0, 1}, {1, 2}, {2, 3}};
    QCOMPARE(bl::decimate_m4(pts, 0, 2, 100), pts);
    QCOMPARE(bl::decimate_m4(pts, 0.5, 2, 100).size(), 2);  // clipped to the range
    QVERIFY(bl::decimate_m4({}, 0, 1, 10).isEmpty());
  }

  void large_series_bounded_and_spikes_kept() {
    const int n = 100'000, width = 500;
    QList<QPointF> pts;
    pts.reserve(n);
    for (int i = 0; i < n; ++i) pts.append(QPointF(i, std::sin(i * 0.001)));
    pts[54'321].setY(50.0);  // one-sample spikes must survive
    pts[77'777].setY(-40.0);
    const QList<QPointF> d = bl::decimate_m4(pts, 0, n - 1, width);
    QVERIFY2(d.size() <= 4 * width, qPrintable(QString::number(d.size())));
    QVERIFY(d.size() >= width);  // every column non-empty here
    double mx = -1e9, mn = 1e9;
    for (int i = 0; i < d.size(); ++i) {
      mx = std::max(mx, d[i].y());
      mn = std::min(mn, d[i].y());
      if (i) QVERIFY(d[i].x() > d[i - 1].x());
    }
    QCOMPARE(mx, 50.0);
    QCOMPARE(mn, -40.0);
    QCOMPARE(d.front(), pts.front());
    QCOMPARE(d.back(), pts.back());
  }

  void zoomed_range_uses_only_visible_points() {
    QList<QPointF> pts;
    for (int i = 0; i < 10'000; ++i) pts.append(QPointF(i, i % 7));
    const QList<QPointF> d = bl::decimate_m4(pts, 1000, 2000, 50);
    QVERIFY(d.size() <= 200);
    QVERIFY(d.front().x() >= 1000 && d.back().x() <= 2000);
    QCOMPARE(d.front().x(), 1000.0);
    QCOMPARE(d.back().x(), 2000.0);
  }
};

QTEST_GUILESS_MAIN(DecimateTest)
#include "gui_decimate_test.moc"
