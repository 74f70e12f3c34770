#include "plot/plot_view.h"

#include <QAreaSeries>
#include <QChart>
#include <QChartView>
#include <QCoreApplication>
#include <QGraphicsLayout>
#include <QGraphicsLineItem>
#include <QGraphicsScene>
#include <QLabel>
#include <QLegend>
#include <QLegendMarker>
#include <QLineSeries>
#include <QLogValueAxis>
#include <QMouseEvent>
#include <QPainter>
#include <QPen>
#include <QPointer>
#include <QTimer>
#include <QVBoxLayout>
#include <QValueAxis>
#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "plot/decimate.h"

namespace bl {
/// QChartView with horizontal rubber-band zoom, double-click reset and hover.
class PlotChartView : public QChartView {
 public:
  PlotChartView(QChart* chart, PlotView* owner) : QChartView(chart, owner), owner_(owner) {
    setRubberBand(QChartView::HorizontalRubberBand);
    setMouseTracking(true);
    viewport()->setMouseTracking(true);
  }

 protected:
  void mouseMoveEvent(QMouseEvent* e) override {
    QChartView::mouseMoveEvent(e);
    owner_->hover(e->position());
  }
  void mouseReleaseEvent(QMouseEvent* e) override {
    // The rubber band (left drag) zooms in, a right click zooms out: both end
    // here, with the axis already at the user's range. Decimate for it.
    QChartView::mouseReleaseEvent(e);
    owner_->user_zoomed();
  }
  void mouseDoubleClickEvent(QMouseEvent* e) override {
    owner_->reset_zoom();
    e->accept();
  }
  void leaveEvent(QEvent* e) override {
    owner_->hide_hover();
    QChartView::leaveEvent(e);
  }
  void resizeEvent(QResizeEvent* e) override {
    QChartView::resizeEvent(e);
    owner_->dirty_ = true;  // more or fewer pixel columns: decimate again
  }

 private:
  PlotView* owner_;
};

namespace {

/// Redraws the dirty plots one per event-loop pass, 12 ms apart. Plots
/// dirtied together (a growing run in four charts of 20 runs each) would
/// otherwise redraw in one pass, their costs adding up to one stall; their
/// own timers drift into step after any stall, so staggering them does not last.
class RedrawQueue : public QObject {
 public:
  static RedrawQueue& get() {
    static QPointer<RedrawQueue> q;
    if (!q) q = new RedrawQueue(QCoreApplication::instance());  // dies with the app
    return *q;
  }
  void request(PlotView* p) {
    if (!queue_.contains(p)) queue_.append(p);
    if (!timer_.isActive()) timer_.start();
  }
  void remove(PlotView* p) { queue_.removeAll(p); }

 private:
  explicit RedrawQueue(QObject* parent) : QObject(parent) {
    timer_.setInterval(12);
    connect(&timer_, &QTimer::timeout, this, [this] {
      if (queue_.isEmpty()) return timer_.stop();
      queue_.takeFirst()->redraw_now();  // a no-op if drawn meanwhile
    });
  }
  QList<PlotView*> queue_;
  QTimer timer_;
};

QColor faded(const QColor& c) {
  QColor f = c;
  f.setAlpha(70);
  return f;
}

/// Index of the point nearest to x in a list sorted by x (-1 if empty).
qsizetype nearest(const QList<QPointF>& pts, double x) {
  if (pts.isEmpty()) return -1;
  auto it = std::lower_bound(pts.begin(), pts.end(), x,
                             [](const QPointF& p, double v) { return p.x() < v; });
  if (it == pts.end()) return pts.size() - 1;
  qsizetype i = it - pts.begin();
  if (i > 0 && std::abs(pts[i - 1].x() - x) <= std::abs(pts[i].x() - x)) --i;
  return i;
}

QList<QPointF> positive_only(const QList<QPointF>& pts) {
  QList<QPointF> out;
  out.reserve(pts.size());
  for (const QPointF& p : pts)
    if (p.y() > 0) out.append(p);
  return out;
}

/// Debiased EMA of pts' y values (TensorBoard-style), same x.
QList<QPointF> ema_of(const QList<QPointF>& pts, double w) {
  QList<QPointF> out;
  out.reserve(pts.size());
  double ema = 0, wn = 1;
  for (const QPointF& p : pts) {
    ema = ema * w + (1 - w) * p.y();
    wn *= w;
    const double debias = 1 - wn;
    out.append(QPointF(p.x(), debias > 0 ? ema / debias : p.y()));
  }
  return out;
}

QString fmt(double v) {
  return QString::number(v, 'g', 5);
}

/// Smallest of 1, 1.2, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9 x 10^k that is >= v.
double nice_up(double v) {
  if (!(v > 0)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

/// Qt's QValueAxis::applyNiceNumbers (AbstractDomain::looseNiceNumbers), computed
/// here so the axis changes once per fit instead of twice.
double nice_number(double x, bool ceiling) {
  const double z = std::pow(10.0, std::floor(std::log10(x)));
  const double q = x / z;
  if (ceiling) return (q <= 1.0 ? 1 : q <= 2.0 ? 2 : q <= 5.0 ? 5 : 10) * z;
  return (q < 1.5 ? 1 : q < 3.0 ? 2 : q < 7.0 ? 5 : 10) * z;
}
void loose_nice_numbers(double& lo, double& hi, int& ticks) {
  if (!(hi > lo)) return;
  const double range = nice_number(hi - lo, true);
  const double step = nice_number(range / (ticks - 1), false);
  lo = std::floor(lo / step);
  hi = std::ceil(hi / step);
  ticks = int(hi - lo) + 1;
  lo *= step;
  hi *= step;
}

/// Smallest of 1, 2, 2.5, 5 x 10^k that is >= v: a tick interval.
double nice_step(double v) {
  if (!(v > 0)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

}  // namespace

PlotView::PlotView(const QString& title, QWidget* parent) : QWidget(parent) {
  chart_ = new QChart;
  chart_->setTitle(title);
  QFont tf = chart_->titleFont();
  tf.setBold(true);
  chart_->setTitleFont(tf);
  chart_->setAnimationOptions(QChart::NoAnimation);
  chart_->legend()->setAlignment(Qt::AlignBottom);
  chart_->setMargins(QMargins(2, 2, 2, 2));
  chart_->layout()->setContentsMargins(0, 0, 0, 0);
  chart_->setBackgroundRoundness(0);
  chart_->setDropShadowEnabled(false);  // a blur effect repainted with every frame
  x_axis_ = new QValueAxis;
  x_axis_->setTitleText("step");
  x_axis_->setLabelFormat("%g");
  x_axis_->setTickCount(6);
  chart_->addAxis(x_axis_, Qt::AlignBottom);
  attach_y_axis();
  // Never OpenGL: it crashes grab() under the offscreen platform (research.md B.4).
  view_ = new PlotChartView(chart_, this);
  view_->setRenderHint(QPainter::Antialiasing, false);
  view_->setOptimizationFlags(QGraphicsView::DontSavePainterState |
                              QGraphicsView::DontAdjustForAntialiasing);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(view_);
  setMinimumSize(260, 180);

  readout_ = new QLabel(view_);
  readout_->setObjectName("readout");
  readout_->setTextFormat(Qt::RichText);
  readout_->setAttribute(Qt::WA_TransparentForMouseEvents);
  readout_->setStyleSheet(
      "QLabel { background: rgba(255,255,255,235); color: black; border: 1px solid #999; "
      "padding: 3px; }");  // a light box in either theme
  readout_->hide();
  cursor_line_ = new QGraphicsLineItem(chart_);
  cursor_line_->setPen(QPen(QColor(0, 0, 0, 90), 1, Qt::DashLine));
  cursor_line_->setZValue(1000);
  cursor_line_->hide();

  // Axis labels change the plot area's width: decimate for the new column count.
  connect(chart_, &QChart::plotAreaChanged, this, [this](const QRectF& r) {
    if (int(r.width()) != drawn_columns_) dirty_ = true;
  });

  timer_ = new QTimer(this);
  timer_->setInterval(100);  // <= 10 redraws per second, only when dirty
  connect(timer_, &QTimer::timeout, this, [this] {
    if (dirty_) RedrawQueue::get().request(this);
  });
  timer_->start();
}

PlotView::~PlotView() {
  RedrawQueue::get().remove(this);
}

void PlotView::attach_y_axis() {
  QAbstractAxis* old = y_axis_;
  if (log_y_) {
    auto* a = new QLogValueAxis;
    a->setBase(10);
    a->setLabelFormat("%.3g");
    a->setMinorTickCount(-1);
    y_axis_ = a;
  } else {
    auto* a = new QValueAxis;
    a->setLabelFormat("%.3g");
    a->setTickCount(5);
    y_axis_ = a;
  }
  chart_->addAxis(y_axis_, Qt::AlignLeft);
  refit_y_ = true;
  for (Series& s : series_)
    for (QLineSeries* l : {s.raw_line, s.line}) {
      if (!l) continue;
      if (old) l->detachAxis(old);
      l->attachAxis(y_axis_);
    }
  for (Band& b : bands_) {
    if (old) b.area->detachAxis(old);
    b.area->attachAxis(y_axis_);
  }
  if (old) {
    chart_->removeAxis(old);
    delete old;
  }
}

int PlotView::add_series(const QString& name, const QColor& color, Style style) {
  Series s;
  s.name = name;
  s.color = color;
  s.style = style;
  auto make = [&](bool legend) {
    auto* l = new QLineSeries;
    l->setName(name);
    chart_->addSeries(l);
    l->attachAxis(x_axis_);
    l->attachAxis(y_axis_);
    for (QLegendMarker* m : chart_->legend()->markers(l)) m->setVisible(legend);
    return l;
  };
  s.raw_line = make(!style.smooth);
  if (style.markers) {
    s.raw_line->setPointsVisible(true);
    s.raw_line->setMarkerSize(4);
  }
  if (style.smooth) s.line = make(true);
  series_.append(s);
  // Pens depend on the smoothing (raw lines fade behind a smoothed one).
  const double w = smoothing_;
  smoothing_ = -1;
  set_smoothing(w);
  return int(series_.size() - 1);
}

int PlotView::add_band(const QString& name, const QColor& color) {
  Band b;
  b.name = name;
  b.color = color;
  b.area = new QAreaSeries;
  b.area->setName(name);
  // Parented to the area: removed and deleted with it.
  b.area->setUpperSeries(new QLineSeries(b.area));
  b.area->setLowerSeries(new QLineSeries(b.area));
  chart_->addSeries(b.area);
  b.area->attachAxis(x_axis_);
  b.area->attachAxis(y_axis_);
  for (QLegendMarker* m : chart_->legend()->markers(b.area)) m->setVisible(false);
  bands_.append(b);
  const double w = smoothing_;  // styles the new band
  smoothing_ = -1;
  set_smoothing(w);
  return int(bands_.size() - 1);
}

void PlotView::set_band(int band, QList<QPointF> lower, QList<QPointF> upper, QList<int> counts) {
  if (band < 0 || band >= bands_.size()) return;
  Band& b = bands_[band];
  b.counts = std::move(counts);
  b.lower = std::move(lower);
  b.upper = std::move(upper);
  rebuild_band_smoothed(b);
  refit_y_ = true;
  dirty_ = true;
}

void PlotView::rebuild_band_smoothed(Band& b) {
  b.stale = true;
  b.smooth_lower = smoothing_ > 0 ? ema_of(b.lower, smoothing_) : QList<QPointF>();
  b.smooth_upper = smoothing_ > 0 ? ema_of(b.upper, smoothing_) : QList<QPointF>();
}

QList<QPointF> PlotView::band_lower(int band) const {
  return band >= 0 && band < bands_.size() ? bands_[band].lower : QList<QPointF>();
}

QList<QPointF> PlotView::band_upper(int band) const {
  return band >= 0 && band < bands_.size() ? bands_[band].upper : QList<QPointF>();
}

qsizetype PlotView::band_drawn_count(int band) const {
  if (band < 0 || band >= bands_.size()) return 0;
  const QAreaSeries* a = bands_[band].area;
  return a->upperSeries()->count() + a->lowerSeries()->count();
}

void PlotView::set_points(int series, QList<QPointF> points) {
  if (series < 0 || series >= series_.size()) return;
  Series& s = series_[series];
  s.points = std::move(points);
  refit_y_ = true;
  rebuild_smoothed(series);
  dirty_ = true;
}

void PlotView::append(int series, double x, double y) {
  if (series < 0 || series >= series_.size() || !std::isfinite(x) || !std::isfinite(y)) return;
  Series& s = series_[series];
  s.stale = true;
  s.points.append(QPointF(x, y));
  if (s.style.smooth) {
    const double w = smoothing_;
    s.ema = s.ema * w + (1 - w) * y;
    ++s.ema_n;
    const double debias = 1 - std::pow(w, double(s.ema_n));
    s.smoothed.append(QPointF(x, debias > 0 ? s.ema / debias : y));
  }
  dirty_ = true;
}

void PlotView::rebuild_smoothed(int series) {
  Series& s = series_[series];
  s.stale = true;
  s.smoothed.clear();
  s.ema = 0;
  s.ema_n = 0;
  if (!s.style.smooth) return;
  s.smoothed.reserve(s.points.size());
  const double w = smoothing_;
  double wn = 1;  // w^n
  for (const QPointF& p : s.points) {
    s.ema = s.ema * w + (1 - w) * p.y();
    ++s.ema_n;
    wn *= w;
    const double debias = 1 - wn;
    s.smoothed.append(QPointF(p.x(), debias > 0 ? s.ema / debias : p.y()));
  }
}

void PlotView::clear_series() {
  for (Series& s : series_)
    for (QLineSeries* l : {s.raw_line, s.line})
      if (l) {
        chart_->removeSeries(l);
        delete l;
      }
  series_.clear();
  for (Band& b : bands_) {
    chart_->removeSeries(b.area);
    delete b.area;
  }
  bands_.clear();
  refit_y_ = true;
  hide_hover();
  dirty_ = true;
}

void PlotView::clear() {
  for (int i = 0; i < series_.size(); ++i) {
    series_[i].points.clear();
    rebuild_smoothed(i);
    for (QLineSeries* l : {series_[i].raw_line, series_[i].line})
      if (l) l->clear();
  }
  for (Band& b : bands_) {
    b.lower.clear();
    b.upper.clear();
    rebuild_band_smoothed(b);
    b.area->upperSeries()->clear();
    b.area->lowerSeries()->clear();
  }
  zoom_.reset();
  refit_y_ = true;
  dirty_ = true;
}

void PlotView::set_smoothing(double weight) {
  weight = std::clamp(weight, 0.0, 0.999);
  if (weight == smoothing_) return;
  smoothing_ = weight;
  refit_y_ = true;
  for (int i = 0; i < series_.size(); ++i) {
    Series& s = series_[i];
    rebuild_smoothed(i);
    QPen raw(smoothed_visible(s) ? faded(s.color) : s.color);
    raw.setWidthF(smoothed_visible(s) ? 1.0 : 1.5);
    if (s.style.dashed) raw.setStyle(Qt::DashLine);
    s.raw_line->setPen(raw);
    if (s.style.markers) s.raw_line->setBrush(s.color);
    if (s.line) {
      QPen pen(s.color);
      pen.setWidthF(1.8);
      if (s.style.dashed) pen.setStyle(Qt::DashLine);
      s.line->setPen(pen);
      s.line->setVisible(smoothed_visible(s));
    }
  }
  for (Band& b : bands_) {
    rebuild_band_smoothed(b);
    QColor fill = b.color;
    fill.setAlpha(55);
    b.area->setBrush(fill);
    b.area->setPen(Qt::NoPen);
  }
  dirty_ = true;
}

void PlotView::set_legend_visible(bool on) {
  chart_->legend()->setVisible(on);
}

bool PlotView::legend_visible() const {
  return chart_->legend()->isVisible();
}

void PlotView::set_dark(bool on) {
  chart_->setTheme(on ? QChart::ChartThemeDark : QChart::ChartThemeLight);
  // setTheme resets fonts and series pens: restore the bold title and our pens.
  QFont tf = chart_->titleFont();
  tf.setBold(true);
  chart_->setTitleFont(tf);
  cursor_line_->setPen(
      QPen(on ? QColor(255, 255, 255, 110) : QColor(0, 0, 0, 90), 1, Qt::DashLine));
  const double w = smoothing_;
  smoothing_ = -1;
  set_smoothing(w);
}

void PlotView::render_to(QPainter* painter, const QRectF& target) {
  hide_hover();
  const QRectF old = chart_->geometry();
  // Lay the chart out at the export size and decimate for its plot width, so
  // a large export keeps its detail; then put everything back.
  chart_->setGeometry(QRectF(old.topLeft(), target.size()));
  chart_->layout()->activate();  // plotArea() for the new size, before decimating
  dirty_ = true;
  redraw();
  chart_->scene()->render(painter, target, chart_->sceneBoundingRect());
  chart_->setGeometry(old);
  chart_->layout()->activate();
  dirty_ = true;
  redraw();
}

void PlotView::set_log_y(bool on) {
  if (on == log_y_) return;
  log_y_ = on;
  attach_y_axis();
  dirty_ = true;
}

void PlotView::set_x_title(const QString& title) {
  x_axis_->setTitleText(title);
}

void PlotView::zoom_x(double x0, double x1) {
  if (!(x1 > x0)) return;
  zoom_ = std::make_pair(x0, x1);
  refit_y_ = true;
  dirty_ = true;
}

void PlotView::user_zoomed() {
  zoom_x(x_axis_->min(), x_axis_->max());
}

void PlotView::reset_zoom() {
  zoom_.reset();
  refit_y_ = true;
  dirty_ = true;
}

qsizetype PlotView::point_count(int series) const {
  return series >= 0 && series < series_.size() ? series_[series].points.size() : 0;
}

qsizetype PlotView::drawn_count(int series) const {
  if (series < 0 || series >= series_.size()) return 0;
  const Series& s = series_.at(series);
  return s.raw_line->count() + (s.line ? s.line->count() : 0);
}

qsizetype PlotView::total_drawn() const {
  qsizetype n = 0;
  for (int i = 0; i < series_.size(); ++i) n += drawn_count(i);
  return n;
}

int PlotView::plot_width() const {
  return std::max(1, int(chart_->plotArea().width()));
}

void PlotView::redraw_now() {
  redraw();
}

void PlotView::redraw() {
  if (!dirty_) return;
  dirty_ = false;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0;
  for (const Series& s : series_) {
    if (s.points.isEmpty()) continue;
    x0 = std::min(x0, s.points.front().x());
    x1 = std::max(x1, s.points.back().x());
  }
  for (const Band& b : bands_)
    for (const QList<QPointF>* pts : {&b.lower, &b.upper})
      if (!pts->isEmpty()) {
        x0 = std::min(x0, pts->front().x());
        x1 = std::max(x1, pts->back().x());
      }
  if (!std::isfinite(x0)) {  // no data yet
    drawn_view_.reset();
    for (Series& s : series_)
      for (QLineSeries* l : {s.raw_line, s.line})
        if (l) l->clear();
    for (Band& b : bands_) {
      b.area->upperSeries()->clear();
      b.area->lowerSeries()->clear();
    }
    return;
  }
  if (zoom_) std::tie(x0, x1) = *zoom_;
  if (x1 <= x0) x1 = x0 + 1;
  // y range of what is visible (spikes included: they are real data).
  double y0 = std::numeric_limits<double>::infinity(), y1 = -y0;
  auto scan = [&](const QList<QPointF>& pts) {
    auto lo = std::lower_bound(pts.begin(), pts.end(), x0,
                               [](const QPointF& p, double v) { return p.x() < v; });
    for (auto it = lo; it != pts.end() && it->x() <= x1; ++it) {
      if (log_y_ && it->y() <= 0) continue;
      y0 = std::min(y0, it->y());
      y1 = std::max(y1, it->y());
    }
  };
  for (const Series& s : series_) {
    scan(s.points);
    if (smoothed_visible(s)) scan(s.smoothed);
  }
  for (const Band& b : bands_) {
    scan(smoothing_ > 0 ? b.smooth_lower : b.lower);
    scan(smoothing_ > 0 ? b.smooth_upper : b.upper);
  }
  // Axis ranges once per redraw, before replace(), and only when the data
  // left them: a range change re-lays out the whole chart, while replace()
  // alone costs ~0.45 us/point (research.md B.3). Growing live data extends
  // the x axis in nice steps (<= ~10% blank on the right) instead of per point.
  if (!zoom_) {
    // Steps count from 1, time and tokens from the first step: start at 0.
    if (x0 > 0 && x0 <= 0.05 * (x1 - x0)) x0 = 0;
    const bool fits = x_axis_->min() == x0 && x_axis_->max() >= x1 &&
                      x_axis_->max() - x0 <= 1.25 * (x1 - x0) + 1e-12;
    if (fits)
      x1 = x_axis_->max();
    else
      x1 = x0 + nice_up((x1 - x0) * 1.08);
  }
  // The y range: kept while it holds the data, else fitted (nice numbers).
  struct YRange {
    double lo, hi, base = 10;
    int ticks = 5;
  };
  std::optional<YRange> y_new;
  if (std::isfinite(y0)) {
    if (log_y_) {
      auto* a = static_cast<QLogValueAxis*>(y_axis_);
      const bool fits = !refit_y_ && a->min() <= y0 && a->max() >= y1 &&
                        a->max() / a->min() <= 3 * (y1 / y0) * 1.33;
      if (!fits) {
        YRange r{y0 / 1.15, y1 * 1.15};
        // Labels sit at powers of the base: base 10 labels nothing on a loss
        // between 2 and 5. Under four decades the base is the fourth root of
        // the range, so four or five labelled ticks always fall inside it.
        const double ratio = r.hi / r.lo;
        r.base = ratio >= 1e4 ? 10.0 : std::max(1.0001, std::pow(ratio, 0.25));
        if (r.lo != a->min() || r.hi != a->max() || r.base != a->base()) y_new = r;
      }
    } else {
      auto* a = static_cast<QValueAxis*>(y_axis_);
      const double need = std::max(y1 - y0, std::max(1e-9, std::abs(y0) * 0.02));
      // Keep the (nice-numbered) range while it holds the data and the data
      // has not shrunk to well under the span the range was made for.
      const bool fits = !refit_y_ && a->min() <= y0 && a->max() >= y1 && need >= 0.6 * y_need_;
      if (!fits) {
        y_need_ = need;
        const double pad = y1 > y0 ? 0.05 * (y1 - y0) : std::max(1e-6, std::abs(y0) * 0.05);
        // Non-negative data (loss, tokens/s, norms) never gets a negative axis.
        YRange r{y0 >= 0 ? std::max(0.0, y0 - pad) : y0 - pad, y1 + pad};
        loose_nice_numbers(r.lo, r.hi, r.ticks);
        if (r.lo != a->min() || r.hi != a->max() || r.ticks != a->tickCount()) y_new = r;
      }
    }
  }
  refit_y_ = false;
  const bool x_new = x_axis_->min() != x0 || x_axis_->max() != x1;
  const int columns = plot_width();
  drawn_columns_ = columns;
  // Qt Charts re-lays out (and strokes) every line on an axis change and on
  // replace(), ~0.45 us per point: with 20 runs shown, one growing run cost
  // ~100 ms per redraw. So only series whose data changed are replaced, unless
  // the view changed; then the lines are emptied before the axes change, so
  // each is laid out once, with its new points.
  const std::tuple<double, double, int, bool> view{x0, x1, columns, log_y_};
  const bool all = drawn_view_ != view || y_new;
  drawn_view_ = view;
  if (x_new || y_new) {
    for (Series& s : series_)
      for (QLineSeries* l : {s.raw_line, s.line})
        if (l) l->clear();
    for (Band& b : bands_) {
      b.area->upperSeries()->clear();
      b.area->lowerSeries()->clear();
    }
  }
  if (x_new) {
    const double step = nice_step((x1 - x0) / 5);
    x_axis_->setTickType(QValueAxis::TicksDynamic);
    x_axis_->setTickAnchor(0);
    x_axis_->setTickInterval(step);
    x_axis_->setLabelFormat(step >= 1 && x1 < 1e9 ? "%.0f" : "%g");
    x_axis_->setRange(x0, x1);
  }
  if (y_new && log_y_) {
    auto* a = static_cast<QLogValueAxis*>(y_axis_);
    a->setRange(y_new->lo, y_new->hi);
    a->setBase(y_new->base);
  } else if (y_new) {
    auto* a = static_cast<QValueAxis*>(y_axis_);
    a->setTickCount(y_new->ticks);
    a->setRange(y_new->lo, y_new->hi);
    a->setLabelFormat(std::max(std::abs(y_new->lo), std::abs(y_new->hi)) >= 1000 ? "%.0f" : "%.3g");
  }
  auto draw = [&](QLineSeries* line, const QList<QPointF>& pts) {
    line->replace(decimate_m4(log_y_ ? positive_only(pts) : pts, x0, x1, columns));
  };
  for (Series& s : series_) {
    if (!all && !s.stale) continue;
    s.stale = false;
    draw(s.raw_line, s.points);
    if (s.line) {
      if (smoothed_visible(s))
        draw(s.line, s.smoothed);
      else
        s.line->clear();
    }
  }
  for (Band& b : bands_) {
    if (!all && !b.stale) continue;
    b.stale = false;
    draw(b.area->lowerSeries(), smoothing_ > 0 ? b.smooth_lower : b.lower);
    draw(b.area->upperSeries(), smoothing_ > 0 ? b.smooth_upper : b.upper);
  }
}

QStringList PlotView::readout_at(double x) const {
  QStringList out;
  for (const Series& s : series_) {
    const qsizetype i = nearest(s.points, x);
    if (i < 0) continue;
    QString line = s.name + ": ";
    if (smoothed_visible(s))
      line += fmt(s.smoothed[i].y()) + " (raw " + fmt(s.points[i].y()) + ")";
    else
      line += fmt(s.points[i].y());
    line += " @ " + fmt(s.points[i].x());
    for (const Band& b : bands_) {
      if (b.name != s.name) continue;
      const qsizetype j = nearest(b.lower, x);
      if (j < 0 || j >= b.upper.size()) break;
      line += " · band " + fmt(b.lower[j].y()) + " – " + fmt(b.upper[j].y());
      if (j < b.counts.size()) line += QString(" · n=%1").arg(b.counts[j]);
      break;
    }
    out << line;
  }
  return out;
}

void PlotView::show_readout_at(double x) {
  redraw();
  if (series_.isEmpty()) return;
  const QPointF chart_pos = chart_->mapToPosition(QPointF(x, 0), series_.front().raw_line);
  const QPointF scene_pos =
      chart_->mapToScene(QPointF(chart_pos.x(), chart_->plotArea().center().y()));
  hover(view_->mapFromScene(scene_pos));
}

void PlotView::hover(const QPointF& widget_pos) {
  if (series_.isEmpty()) return hide_hover();
  const QPointF chart_pos = chart_->mapFromScene(view_->mapToScene(widget_pos.toPoint()));
  const QRectF area = chart_->plotArea();
  if (!area.contains(chart_pos)) return hide_hover();
  const double x = chart_->mapToValue(chart_pos, series_.front().raw_line).x();
  QStringList rows;
  rows << "<b>" + x_axis_->titleText().toHtmlEscaped() + " " + fmt(x) + "</b>";
  const QStringList values = readout_at(x);
  int k = 0;
  for (const Series& s : series_) {
    if (s.points.isEmpty()) continue;
    rows << QString("<span style='color:%1'>&#9632;</span> %2")
                .arg(s.color.name(), values[k++].toHtmlEscaped());
  }
  readout_->setText(rows.join("<br>"));
  readout_->adjustSize();
  // Next to the cursor, kept inside the view.
  QPoint p = widget_pos.toPoint() + QPoint(14, 14);
  if (p.x() + readout_->width() > view_->width()) p.setX(widget_pos.x() - 14 - readout_->width());
  if (p.y() + readout_->height() > view_->height()) p.setY(view_->height() - readout_->height());
  readout_->move(std::max(0, p.x()), std::max(0, p.y()));
  readout_->show();
  readout_->raise();
  cursor_line_->setLine(chart_pos.x(), area.top(), chart_pos.x(), area.bottom());
  cursor_line_->show();
}

void PlotView::hide_hover() {
  readout_->hide();
  if (cursor_line_) cursor_line_->hide();
}

}  // namespace bl
