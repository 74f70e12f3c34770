// The plotting adapter: the only code that includes Qt Charts. Keeps every
// series' full data in memory and draws a per-pixel-column decimation
// (decimate_m4) of the visible x range, recomputed on zoom and resize, redrawn
// at most 10 times a second and only when something changed (research.md B.3),
// one plot per event-loop pass.
//
// Each series is drawn as a faded raw line with its EMA-smoothed line on top
// (smoothing 0 draws only the raw line, opaque). Bands (a run group's ±std or
// min/max) are shaded areas behind the lines, smoothed like them. Drag horizontally to zoom,
// right-click to zoom out, double-click to reset; hovering shows the value of
// every series at the cursor.
#pragma once

#include <QColor>
#include <QList>
#include <QPointF>
#include <QString>
#include <QWidget>
#include <optional>
#include <tuple>
#include <utility>

class QTimer;
class QChart;
class QLabel;
class QLineSeries;
class QAreaSeries;
class QValueAxis;
class QAbstractAxis;
class QGraphicsLineItem;
class QPainter;
class QRectF;

namespace bl {

class PlotChartView;

class PlotView : public QWidget {
  Q_OBJECT

 public:
  struct Style {
    bool dashed = false;
    bool markers = false;  // draw a dot at every point (sparse series such as eval loss)
    bool smooth = true;    // follows the view's smoothing; false = always raw
  };

  explicit PlotView(const QString& title, QWidget* parent = nullptr);
  ~PlotView() override;

  /// Adds a series; returns its id for append()/set_points().
  int add_series(const QString& name, const QColor& color, Style style);
  int add_series(const QString& name, const QColor& color) { return add_series(name, color, {}); }
  /// Replaces a series' points (sorted by x).
  void set_points(int series, QList<QPointF> points);
  /// Appends one point (x must not decrease). Drawn at the next redraw tick.
  void append(int series, double x, double y);
  /// Adds a shaded band between a lower and an upper curve, `color` faded,
  /// not in the legend; returns its id for set_band().
  int add_band(const QString& name, const QColor& color);
  /// Replaces a band's bounds (each sorted by x; usually at the same x) and,
  /// optionally, how many runs each x aggregates (shown on hover).
  void set_band(int band, QList<QPointF> lower, QList<QPointF> upper, QList<int> counts = {});
  int band_count() const { return int(bands_.size()); }
  /// A band's stored lower and upper points (full resolution, unsmoothed).
  QList<QPointF> band_lower(int band) const;
  QList<QPointF> band_upper(int band) const;
  /// Points handed to the chart for a band (upper + lower, after decimation).
  qsizetype band_drawn_count(int band) const;
  /// Removes every series and band.
  void clear_series();
  /// Drops every point of every series (keeps the series).
  void clear();

  /// EMA weight in [0, 0.999] (TensorBoard-style, debiased); 0 = no smoothing.
  void set_smoothing(double weight);
  double smoothing() const { return smoothing_; }
  void set_log_y(bool on);
  bool log_y() const { return log_y_; }
  void set_x_title(const QString& title);
  /// Shows only [x0, x1] (decimated again for that range); reset_zoom() shows everything.
  void zoom_x(double x0, double x1);
  void reset_zoom();
  std::optional<std::pair<double, double>> zoom() const { return zoom_; }

  int series_count() const { return int(series_.size()); }
  /// Points stored for `series` (full resolution); 0 for an unknown series.
  qsizetype point_count(int series) const;
  /// Points handed to the chart for `series` (raw + smoothed lines, after decimation).
  qsizetype drawn_count(int series) const;
  /// Points handed to the chart for all series.
  qsizetype total_drawn() const;
  /// Width in pixels of the plot area (the decimation's column count).
  int plot_width() const;
  /// "name: value" for every series at data x (nearest point), as shown on
  /// hover; a series with a band of its name adds the band's raw range and run count.
  QStringList readout_at(double x) const;
  /// Shows the hover readout for data x, as if the mouse were there (tests, screenshots).
  void show_readout_at(double x);
  /// Redraws immediately if anything changed (tests, screenshots).
  void redraw_now();
  /// Shows or hides the chart's own legend (the charts panel draws one shared
  /// legend instead when several runs would crowd it to "#...").
  void set_legend_visible(bool on);
  bool legend_visible() const;
  /// Dark or light chart colours (follows the window theme).
  void set_dark(bool on);
  /// Paints the chart alone (no hover, no controls) into `target` of `painter`,
  /// laid out and decimated for that size: PNG and SVG export.
  void render_to(QPainter* painter, const QRectF& target);
  /// The y axis (a QLogValueAxis in log scale, else a QValueAxis).
  QAbstractAxis* y_axis() const { return y_axis_; }

 private:
  friend class PlotChartView;
  void redraw();
  void rebuild_smoothed(int series);
  void attach_y_axis();
  void hover(const QPointF& widget_pos);
  void hide_hover();
  void user_zoomed();  // the chart view changed the x range (rubber band / zoom out)

  struct Series {
    QString name;
    QColor color;
    Style style;
    QList<QPointF> points;    // raw, full resolution
    QList<QPointF> smoothed;  // EMA of points (same x), when style.smooth
    double ema = 0;           // running EMA state for appends
    qsizetype ema_n = 0;
    QLineSeries* raw_line = nullptr;
    QLineSeries* line = nullptr;  // smoothed (nullptr when the series is not smoothed)
    bool stale = true;            // data changed since it was last handed to the chart
  };
  bool smoothed_visible(const Series& s) const { return s.style.smooth && smoothing_ > 0; }
  struct Band {
    QString name;
    QColor color;
    QList<QPointF> lower, upper;                // raw
    QList<int> counts;                          // runs per lower point, or empty
    QList<QPointF> smooth_lower, smooth_upper;  // EMA of lower / upper (same x)
    QAreaSeries* area = nullptr;                // owns its two boundary lines
    bool stale = true;
  };
  void rebuild_band_smoothed(Band& b);

  QChart* chart_;
  PlotChartView* view_;
  QValueAxis* x_axis_;
  QAbstractAxis* y_axis_ = nullptr;
  QList<Series> series_;
  QList<Band> bands_;
  QTimer* timer_;
  QLabel* readout_;
  QGraphicsLineItem* cursor_line_ = nullptr;
  double smoothing_ = 0;
  bool log_y_ = false;
  bool dirty_ = false;
  int drawn_columns_ = 0;
  double y_need_ = 0;
  bool refit_y_ =
      true;  // fit the y range at the next redraw (new data set, zoom, axis)  // data span the
             // linear y range was last fitted to  // plot width the current decimation was made for
  std::optional<std::pair<double, double>> zoom_;
  /// x0, x1, pixel columns and log scale the drawn points were decimated for.
  std::optional<std::tuple<double, double, int, bool>> drawn_view_;
};

}  // namespace bl
