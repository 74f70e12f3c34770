#include "inspect/heatmap_view.h"

#include <QMouseEvent>
#include <QPainter>
#include <algorithm>
#include <array>
#include <cmath>

namespace bl {

namespace {

// Viridis at 9 stops (matplotlib's), interpolated linearly.
QColor viridis(double t) {
  static const std::array<std::array<int, 3>, 9> stops = {{{68, 1, 84},
                                                           {71, 44, 122},
                                                           {59, 81, 139},
                                                           {44, 113, 142},
                                                           {33, 144, 141},
                                                           {39, 173, 129},
                                                           {92, 200, 99},
                                                           {170, 220, 50},
                                                           {253, 231, 37}}};
  t = std::clamp(t, 0.0, 1.0) * double(stops.size() - 1);
  const size_t i = std::min(size_t(t), stops.size() - 2);
  const double f = t - double(i);
  auto mix = [&](int k) { return int(std::lround(stops[i][k] * (1 - f) + stops[i + 1][k] * f)); };
  return QColor(mix(0), mix(1), mix(2));
}

constexpr int kLabelWidth = 190, kBarWidth = 70, kAxisHeight = 28, kPad = 6;

}  // namespace

HeatmapView::HeatmapView(QWidget* parent) : QWidget(parent) {
  setMouseTracking(true);
  setMinimumSize(320, 160);
}

void HeatmapView::set_grid(HeatmapGrid g, std::vector<int> flags) {
  grid_ = std::move(g);
  pos_min_ = 0;
  for (double w : grid_.values)
    if (std::isfinite(w) && w > 0 && (pos_min_ <= 0 || w < pos_min_)) pos_min_ = w;
  flags_ = std::move(flags);
  flags_.resize(grid_.rows.size(), 0);
  rebuild_image();
  update();
}

void HeatmapView::set_log_scale(bool on) {
  log_ = on;
  rebuild_image();
  update();
}

QColor HeatmapView::color_of(double v) const {
  if (!std::isfinite(v)) return palette().color(QPalette::Window);
  double lo = grid_.min, hi = grid_.max, x = v;
  if (log_) {
    // Log of positive values; the smallest positive value stands in for 0.
    if (pos_min_ <= 0) return viridis(0);
    lo = std::log10(pos_min_);
    hi = std::log10(std::max(hi, pos_min_));
    x = std::log10(std::max(v, pos_min_));
  }
  return viridis(hi > lo ? (x - lo) / (hi - lo) : 0.5);
}

void HeatmapView::rebuild_image() {
  const int cols = int(grid_.steps.size()), rows = int(grid_.rows.size());
  if (!cols || !rows) {
    image_ = QImage();
    return;
  }
  image_ = QImage(cols, rows, QImage::Format_RGB32);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      image_.setPixelColor(c, r, color_of(grid_.at(size_t(r), size_t(c))));
}

QRect HeatmapView::cells_rect() const {
  return QRect(kLabelWidth, kPad, std::max(1, width() - kLabelWidth - kBarWidth - kPad),
               std::max(1, height() - kAxisHeight - kPad));
}

QString HeatmapView::readout_at(const QPoint& p) const {
  const QRect cr = cells_rect();
  if (!cr.contains(p) || grid_.steps.empty() || grid_.rows.empty()) return {};
  const size_t c = std::min(grid_.steps.size() - 1,
                            size_t(double(p.x() - cr.left()) / cr.width() * grid_.steps.size()));
  const size_t r = std::min(grid_.rows.size() - 1,
                            size_t(double(p.y() - cr.top()) / cr.height() * grid_.rows.size()));
  const double v = grid_.at(r, c);
  // Steps are shown 1-based, as everywhere a user sees them.
  return QString("%1, step %2: %3")
      .arg(QString::fromStdString(grid_.rows[r]))
      .arg(grid_.steps[c] + 1)
      .arg(std::isfinite(v) ? QString::number(v, 'g', 5) : QString("no value"));
}

void HeatmapView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), palette().color(QPalette::Base));
  const QRect cr = cells_rect();
  if (image_.isNull()) {
    p.setPen(palette().color(QPalette::Text));
    p.drawText(rect(), Qt::AlignCenter, "No values to draw");
    return;
  }
  // Cells: the grid image scaled without smoothing (each cell a flat block).
  p.drawImage(cr, image_);
  const int rows = int(grid_.rows.size());
  const double rh = double(cr.height()) / rows;
  QFont f = font();
  f.setPointSizeF(std::max(6.0, std::min(f.pointSizeF(), rh * 0.7)));
  p.setFont(f);
  // Row labels, every row if they fit, else evenly thinned.
  const int every = std::max(1, int(std::ceil(double(QFontMetrics(f).height()) / rh)));
  for (int r = 0; r < rows; r += every) {
    const QRect lr(0, cr.top() + int(r * rh), kLabelWidth - 4, int(std::ceil(rh * every)));
    QString label = QString::fromStdString(grid_.rows[size_t(r)]);
    if (flags_[size_t(r)] < 0) label += "  dead";
    if (flags_[size_t(r)] > 0) label += "  overloaded";
    p.setPen(flags_[size_t(r)] ? QColor(200, 30, 30) : palette().color(QPalette::Text));
    p.drawText(lr, Qt::AlignRight | Qt::AlignVCenter,
               QFontMetrics(f).elidedText(label, Qt::ElideMiddle, lr.width()));
  }
  // Step axis: the first, last and a few steps between (1-based).
  p.setPen(palette().color(QPalette::Text));
  p.setFont(font());
  const int ticks = std::min<int>(6, int(grid_.steps.size()));
  for (int k = 0; k < ticks; ++k) {
    const size_t c =
        ticks > 1 ? size_t(std::lround(double(k) * (grid_.steps.size() - 1) / (ticks - 1))) : 0;
    const int x = cr.left() + int((c + 0.5) * double(cr.width()) / grid_.steps.size());
    p.drawLine(x, cr.bottom() + 1, x, cr.bottom() + 4);
    p.drawText(QRect(x - 40, cr.bottom() + 4, 80, kAxisHeight - 6), Qt::AlignHCenter | Qt::AlignTop,
               QString::number(grid_.steps[c] + 1));
  }
  // Colour bar with the scale's ends.
  const QRect bar(cr.right() + 10, cr.top(), 14, cr.height());
  for (int y = 0; y < bar.height(); ++y)
    p.fillRect(bar.left(), bar.top() + y, bar.width(), 1,
               viridis(1.0 - double(y) / std::max(1, bar.height() - 1)));
  p.drawRect(bar.adjusted(0, 0, -1, -1));
  p.drawText(QRect(bar.right() + 3, bar.top() - 2, kBarWidth - 20, 16), Qt::AlignLeft,
             QString::number(grid_.max, 'g', 3));
  const double bottom = log_ && pos_min_ > 0 ? pos_min_ : grid_.min;
  p.drawText(QRect(bar.right() + 3, bar.bottom() - 14, kBarWidth - 20, 16), Qt::AlignLeft,
             QString::number(bottom, 'g', 3));
  if (log_)
    p.drawText(QRect(bar.right() + 3, bar.center().y() - 8, kBarWidth - 20, 16), Qt::AlignLeft,
               "log");
}

void HeatmapView::mouseMoveEvent(QMouseEvent* e) {
  const QString r = readout_at(e->pos());
  setToolTip(r);
  emit hovered(r);
}

void HeatmapView::leaveEvent(QEvent*) {
  emit hovered(QString());
}

}  // namespace bl
