#include "plot/charts_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QImage>
#include <QLabel>
#include <QMenu>
#include <QPainter>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSlider>
#include <QSvgGenerator>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>

#include "plot/plot_view.h"

namespace bl {

void RunCurves::add(const StepMetrics& m) {
  step.push_back(m.step);
  wall.push_back(m.wall_time_s);
  tokens.push_back(double(m.tokens_seen));
  loss.push_back(m.loss);
  tokens_per_sec.push_back(m.tokens_per_sec);
  grad_norm.push_back(m.grad_norm);
  learning_rate.push_back(m.learning_rate);
  extra["step_time_ms"].emplace_back(m.step, m.step_time_ms);
  for (const auto& [name, v] : m.extra) extra[name].emplace_back(m.step, v);
}

QColor qualitative_color(int index) {
  // Okabe-Ito (colour-blind safe) first, then Tableau hues that differ from them.
  static const QColor kPalette[] = {{0, 114, 178},   {230, 159, 0}, {0, 158, 115},
                                    {204, 121, 167}, {213, 94, 0},  {86, 180, 233},
                                    {117, 112, 179}, {140, 86, 75}, {188, 189, 34},
                                    {40, 40, 40},    {228, 26, 28}, {23, 190, 207}};
  const int n = int(std::size(kPalette));
  if (index >= 0 && index < n) return kPalette[index];
  // Beyond the palette: hues spaced by the golden angle never repeat.
  const double hue = std::fmod(0.11 + 0.618033988749895 * double(index - n), 1.0);
  return QColor::fromHsvF(float(hue), 0.75f, index % 2 ? 0.65f : 0.85f);
}

ChartsPanel::ChartsPanel(QWidget* parent) : QWidget(parent) {
  loss_ = new PlotView("Loss (train, eval ●)");
  tps_ = new PlotView("Tokens / s");
  grad_ = new PlotView("Gradient norm (before clipping)");
  lr_ = new PlotView("Learning rate");
  loss_->setObjectName("loss_plot");
  tps_->setObjectName("tokens_plot");
  grad_->setObjectName("grad_plot");
  lr_->setObjectName("lr_plot");

  x_box_ = new QComboBox;
  x_box_->setObjectName("x_axis");
  x_box_->addItems({"step", "wall time (s)", "tokens", "training FLOPs"});
  band_box_ = new QComboBox;
  band_box_->setObjectName("band");
  band_box_->addItems({"±1 std", "min–max"});
  band_box_->setToolTip(
      "The shaded band around each group's mean: ±1 sample standard deviation "
      "across its runs, or their range");
  band_label_ = new QLabel("Band");
  smooth_ = new QSlider(Qt::Horizontal);
  smooth_->setObjectName("smoothing");
  smooth_->setRange(0, 99);
  smooth_->setMaximumWidth(180);
  smooth_->setToolTip("EMA smoothing weight (the raw curve stays visible, faded)");
  smooth_label_ = new QLabel;
  smooth_label_->setMinimumWidth(32);
  log_ = new QCheckBox("log scale");
  log_->setObjectName("log_scale");
  add_chart_ = new QPushButton("Add chart");
  add_chart_->setObjectName("add_chart");
  add_chart_->setToolTip(
      "Chart another metric the shown runs logged (MoE losses, expert load, step time, ...)");
  auto* metrics_menu = new QMenu(add_chart_);
  add_chart_->setMenu(metrics_menu);
  connect(metrics_menu, &QMenu::aboutToShow, this, [this, metrics_menu] {
    metrics_menu->clear();
    const QStringList shown = metric_charts();
    const QStringList names = available_metrics();
    if (names.isEmpty()) metrics_menu->addAction("(no other metric logged)")->setEnabled(false);
    for (const QString& n : names) {
      QAction* a = metrics_menu->addAction(n);
      a->setEnabled(!shown.contains(n));
      connect(a, &QAction::triggered, this, [this, n] { add_metric_chart(n); });
    }
  });
  auto* reset = new QPushButton("Reset zoom");
  reset->setObjectName("reset_zoom");
  reset->setToolTip("Drag on a chart to zoom into a range; right-click zooms out");

  auto* bar = new QHBoxLayout;
  bar->addWidget(new QLabel("X axis"));
  bar->addWidget(x_box_);
  bar->addSpacing(12);
  bar->addWidget(new QLabel("Smoothing"));
  bar->addWidget(smooth_);
  bar->addWidget(smooth_label_);
  bar->addSpacing(12);
  bar->addWidget(log_);
  bar->addSpacing(12);
  bar->addWidget(band_label_);
  bar->addWidget(band_box_);
  band_label_->hide();
  band_box_->hide();
  bar->addStretch(1);
  bar->addWidget(add_chart_);
  bar->addWidget(reset);

  legend_ = new QLabel;
  legend_->setObjectName("legend");
  legend_->setTextFormat(Qt::RichText);
  legend_->setWordWrap(true);
  legend_->hide();

  auto* grid = grid_ = new QGridLayout;
  grid->setSpacing(4);
  grid->addWidget(loss_, 0, 0);
  grid->addWidget(tps_, 0, 1);
  grid->addWidget(grad_, 1, 0);
  grid->addWidget(lr_, 1, 1);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(bar);
  layout->addWidget(legend_);
  layout->addLayout(grid, 1);

  connect(x_box_, &QComboBox::currentIndexChanged, this, [this](int i) { set_x_axis(XAxis(i)); });
  connect(band_box_, &QComboBox::currentIndexChanged, this, [this](int i) { set_band(Band(i)); });
  refill_timer_ = new QTimer(this);
  refill_timer_->setSingleShot(true);
  refill_timer_->setInterval(250);
  connect(refill_timer_, &QTimer::timeout, this, [this] { refill_groups(false); });
  connect(smooth_, &QSlider::valueChanged, this, [this](int v) {
    smooth_label_->setText(QString::number(v / 100.0, 'f', 2));
    for (PlotView* p : plots()) p->set_smoothing(v / 100.0);
  });
  connect(log_, &QCheckBox::toggled, this, [this](bool on) {
    for (PlotView* p : plots()) p->set_log_y(on);
  });
  connect(reset, &QPushButton::clicked, this, [this] {
    for (PlotView* p : plots()) p->reset_zoom();
  });
  smooth_->setValue(60);  // TensorBoard's default weight
}

void ChartsPanel::set_smoothing(double weight) {
  smooth_->setValue(int(std::lround(weight * 100)));
}

void ChartsPanel::set_log_y(bool on) {
  log_->setChecked(on);
}

void ChartsPanel::set_x_axis(XAxis x) {
  if (x_box_->currentIndex() != int(x)) {
    x_box_->setCurrentIndex(int(x));  // re-enters through the signal
    return;
  }
  if (x == x_) return;
  x_ = x;
  for (PlotView* p : plots()) {
    p->set_x_title(x_box_->currentText());
    p->reset_zoom();
  }
  rebuild();
}

double ChartsPanel::x_of(const RunCurves& c, size_t i) const {
  switch (x_) {
    case XAxis::kWallTime:
      return c.wall[i];
    case XAxis::kTokens:
      return c.tokens[i];
    case XAxis::kFlops:
      // Compute spent so far (6N-style, counted on the engine's model): runs of
      // different sizes compare at equal compute.
      return c.tokens[i] * c.flops_per_token;
    case XAxis::kStep:
      break;
  }
  return double(c.step[i] + 1);  // steps taken so far
}

double ChartsPanel::eval_x(const RunCurves& c, int64_t step) const {
  if (x_ == XAxis::kStep) return double(step + 1);
  auto it = std::lower_bound(c.step.begin(), c.step.end(), step);
  if (it != c.step.end() && *it == step) return x_of(c, size_t(it - c.step.begin()));
  return c.size() ? x_of(c, c.size() - 1) : 0.0;
}

QColor ChartsPanel::color_of(int64_t id) const {
  if (!runs_.count(id)) return {};
  if (grouped()) {
    for (size_t g = 0; g < groups_.size(); ++g)
      if (std::find(groups_[g].run_ids.begin(), groups_[g].run_ids.end(), id) !=
          groups_[g].run_ids.end())
        return group_color(g);
    return {};
  }
  auto it = colors_.find(id);
  return it == colors_.end() ? QColor() : qualitative_color(it->second);
}

void ChartsPanel::add_series(Slot& s) {
  const bool many = runs_.size() > 1;
  const QColor col = color_of(s.c.id);
  const QString prefix = many ? QString("#%1 ").arg(s.c.id) : QString();
  s.loss = loss_->add_series(prefix + "train", col);
  // Same colour as its train curve (a darker shade read as another run): dashed with dots.
  s.eval = loss_->add_series(prefix + "eval", col,
                             PlotView::Style{.dashed = true, .markers = true, .smooth = false});
  const QString label = many ? QString("#%1 %2").arg(s.c.id).arg(s.c.name) : s.c.name;
  s.tps = tps_->add_series(label, col);
  s.grad = grad_->add_series(label, col);
  s.lr = lr_->add_series(label, col, PlotView::Style{.smooth = false});
}

void ChartsPanel::push_points(Slot& s, size_t from) {
  const RunCurves& c = s.c;
  for (size_t i = from; i < c.size(); ++i) {
    const double x = x_of(c, i);
    loss_->append(s.loss, x, c.loss[i]);
    tps_->append(s.tps, x, c.tokens_per_sec[i]);
    grad_->append(s.grad, x, c.grad_norm[i]);
    lr_->append(s.lr, x, c.learning_rate[i]);
  }
}

void ChartsPanel::push_evals(Slot& s, size_t from) {
  for (size_t i = from; i < s.c.evals.size(); ++i)
    loss_->append(s.eval, eval_x(s.c, s.c.evals[i].first), s.c.evals[i].second);
}

std::vector<std::pair<QColor, QString>> ChartsPanel::legend_items() const {
  std::vector<std::pair<QColor, QString>> out;
  if (grouped()) {
    for (size_t g = 0; g < groups_.size(); ++g) {
      // Runs of different lengths: how many reach the group's last step (the
      // mean past the others' ends is over fewer runs).
      int n = 0, at_end = 0;
      int64_t last = -1;
      for (int64_t id : groups_[g].run_ids) {
        const auto it = runs_.find(id);
        if (it == runs_.end()) continue;
        ++n;
        const int64_t end = it->second.c.size() ? it->second.c.step.back() : -1;
        if (end > last) at_end = 0;
        last = std::max(last, end);
        if (end == last) ++at_end;
      }
      if (n == 0) continue;
      QString label = groups_[g].label;
      if (label.size() > 48) label = label.left(47) + "…";
      QString count = QString("%1 run%2").arg(n).arg(n == 1 ? "" : "s");
      if (at_end < n && last >= 0) count += QString(", %1 to step %2").arg(at_end).arg(last + 1);
      out.emplace_back(group_color(g), QString("%1 (%2)").arg(label, count));
    }
    return out;
  }
  for (const auto& [id, s] : runs_) {
    QString name = s.c.name;
    if (name.size() > 28) name = name.left(27) + "…";
    out.emplace_back(color_of(id), QString("#%1 %2").arg(id).arg(name));
  }
  return out;
}

void ChartsPanel::update_legend() {
  // Qt Charts shrinks each legend entry to fit one row: with six runs every
  // entry read "#...". One wrapped row of swatches above the charts instead.
  // Groups always use it: it names the run counts and the band.
  const bool many = runs_.size() > 1 || grouped();
  for (PlotView* p : plots()) p->set_legend_visible(!many);
  legend_->setVisible(many);
  if (!many) return;
  QStringList items;
  for (const auto& [color, text] : legend_items())
    items << QString("<span style='color:%1; font-size:large'>&#9632;</span>&nbsp;%2")
                 .arg(color.name(), text.toHtmlEscaped().replace(" ", "&nbsp;"));
  const QString note = grouped() ? QString(
                                       "(mean of each group, band: %1; loss: solid train, "
                                       "dashed ● eval)")
                                       .arg(band_ == Band::kStd ? "±1 std" : "min–max")
                                 : QString("(loss: solid train, dashed ● eval)");
  legend_->setText(items.join(" &nbsp; ") + " &nbsp; <span style='color:gray'>" +
                   note.toHtmlEscaped() + "</span>");
  QString tip;
  if (grouped()) {
    for (const ChartGroup& g : groups_) {
      QStringList ids;
      for (int64_t id : g.run_ids)
        if (runs_.count(id)) ids << QString("#%1").arg(id);
      if (!ids.isEmpty()) tip += g.label + ": " + ids.join(" ") + "\n";
    }
  } else {
    for (const auto& [id, s] : runs_) tip += QString("#%1 %2\n").arg(id).arg(s.c.name);
  }
  legend_->setToolTip(tip.trimmed());
}

void ChartsPanel::rebuild() {
  // Colours: a run keeps its palette slot while shown; a new run takes the
  // first free one, so the N runs on screen always get N different colours.
  for (auto it = colors_.begin(); it != colors_.end();)
    it = runs_.count(it->first) ? std::next(it) : colors_.erase(it);
  for (const auto& [id, s] : runs_) {
    if (colors_.count(id)) continue;
    std::set<int> used;
    for (const auto& [other, c] : colors_) used.insert(c);
    int c = 0;
    while (used.count(c)) ++c;
    colors_[id] = c;
  }
  if (grouped()) return rebuild_groups();
  update_legend();
  for (PlotView* p : plots()) p->clear_series();
  for (auto& [id, s] : runs_) {
    add_series(s);
    // Bulk path: one set_points per series instead of N appends.
    const RunCurves& c = s.c;
    QList<QPointF> l, t, g, r, e;
    l.reserve(qsizetype(c.size()));
    t.reserve(qsizetype(c.size()));
    g.reserve(qsizetype(c.size()));
    r.reserve(qsizetype(c.size()));
    for (size_t i = 0; i < c.size(); ++i) {
      const double x = x_of(c, i);
      if (std::isfinite(c.loss[i])) l.append({x, c.loss[i]});
      if (std::isfinite(c.tokens_per_sec[i])) t.append({x, c.tokens_per_sec[i]});
      if (std::isfinite(c.grad_norm[i])) g.append({x, c.grad_norm[i]});
      if (std::isfinite(c.learning_rate[i])) r.append({x, c.learning_rate[i]});
    }
    for (const auto& [step, v] : c.evals)
      if (std::isfinite(v)) e.append({eval_x(c, step), v});
    loss_->set_points(s.loss, std::move(l));
    loss_->set_points(s.eval, std::move(e));
    tps_->set_points(s.tps, std::move(t));
    grad_->set_points(s.grad, std::move(g));
    lr_->set_points(s.lr, std::move(r));
  }
  for (MetricChart& m : metric_charts_) fill_metric_chart(m);
}

std::vector<PlotView*> ChartsPanel::plots() const {
  std::vector<PlotView*> out{loss_, tps_, grad_, lr_};
  for (const MetricChart& m : metric_charts_) out.push_back(m.plot);
  return out;
}

QStringList ChartsPanel::available_metrics() const {
  std::set<QString> names;
  for (const auto& [id, s] : runs_)
    for (const auto& [name, points] : s.c.extra)
      if (!points.empty()) names.insert(QString::fromStdString(name));
  return QStringList(names.begin(), names.end());
}

QStringList ChartsPanel::metric_charts() const {
  QStringList out;
  for (const MetricChart& m : metric_charts_) out << m.metric;
  return out;
}

PlotView* ChartsPanel::metric_plot(const QString& metric) const {
  for (const MetricChart& m : metric_charts_)
    if (m.metric == metric) return m.plot;
  return nullptr;
}

void ChartsPanel::fill_metric_chart(MetricChart& m) {
  if (grouped()) return fill_group_metric_chart(m);
  m.plot->clear_series();
  m.series.clear();
  const bool many = runs_.size() > 1;
  m.plot->set_legend_visible(!many);
  const std::string key = m.metric.toStdString();
  for (const auto& [id, s] : runs_) {
    const QString label = many ? QString("#%1 %2").arg(id).arg(s.c.name) : s.c.name;
    const int series = m.series[id] = m.plot->add_series(label, color_of(id));
    const auto it = s.c.extra.find(key);
    if (it == s.c.extra.end()) continue;
    QList<QPointF> pts;
    pts.reserve(qsizetype(it->second.size()));
    for (const auto& [step, v] : it->second)
      if (std::isfinite(v)) pts.append({eval_x(s.c, step), v});
    m.plot->set_points(series, std::move(pts));
  }
}

void ChartsPanel::relayout_metric_charts() {
  for (size_t i = 0; i < metric_charts_.size(); ++i)
    grid_->addWidget(metric_charts_[i].frame, 2 + int(i / 2), int(i % 2));
}

void ChartsPanel::add_metric_chart(const QString& metric) {
  if (metric.isEmpty() || metric_plot(metric)) return;
  MetricChart m;
  m.metric = metric;
  m.frame = new QWidget;
  m.frame->setObjectName("chart_" + metric);
  m.plot = new PlotView(metric);
  m.plot->setObjectName("plot_" + metric);
  auto* close = new QToolButton;
  close->setObjectName("close_chart");
  close->setText("×");
  close->setAutoRaise(true);
  close->setToolTip("Remove the chart of " + metric);
  auto* head = new QHBoxLayout;
  head->setContentsMargins(0, 0, 0, 0);
  head->addStretch(1);
  head->addWidget(close);
  auto* v = new QVBoxLayout(m.frame);
  v->setContentsMargins(0, 0, 0, 0);
  v->setSpacing(0);
  v->addLayout(head);
  v->addWidget(m.plot, 1);
  m.plot->set_x_title(x_box_->currentText());
  m.plot->set_smoothing(smooth_->value() / 100.0);
  m.plot->set_log_y(log_->isChecked());
  connect(close, &QToolButton::clicked, this, [this, metric] { remove_metric_chart(metric); });
  metric_charts_.push_back(m);
  fill_metric_chart(metric_charts_.back());
  relayout_metric_charts();
  emit metric_charts_changed();
}

void ChartsPanel::remove_metric_chart(const QString& metric) {
  auto it = std::find_if(metric_charts_.begin(), metric_charts_.end(),
                         [&](const MetricChart& m) { return m.metric == metric; });
  if (it == metric_charts_.end()) return;
  grid_->removeWidget(it->frame);
  it->frame->deleteLater();
  metric_charts_.erase(it);
  relayout_metric_charts();
  emit metric_charts_changed();
}

void ChartsPanel::set_metric_charts(const QStringList& metrics) {
  const QSignalBlocker block(this);
  for (const QString& m : metric_charts()) remove_metric_chart(m);
  for (const QString& m : metrics) add_metric_chart(m);
}

void ChartsPanel::add_run(int64_t id, const QString& name) {
  if (has_run(id)) return;
  Slot s;
  s.c.id = id;
  s.c.name = name;
  runs_[id] = std::move(s);
  rebuild();
}

void ChartsPanel::set_flops_per_token(int64_t id, double flops_per_token) {
  auto it = runs_.find(id);
  if (it == runs_.end() || it->second.c.flops_per_token == flops_per_token) return;
  it->second.c.flops_per_token = flops_per_token;
  if (x_ == XAxis::kFlops) rebuild();
}

void ChartsPanel::set_run(RunCurves c) {
  const int64_t id = c.id;
  runs_[id].c = std::move(c);
  rebuild();
}

void ChartsPanel::set_runs(std::vector<RunCurves> runs) {
  if (runs.empty()) return;
  for (RunCurves& c : runs) {
    const int64_t id = c.id;
    runs_[id].c = std::move(c);
  }
  rebuild();
}

void ChartsPanel::set_groups(std::vector<ChartGroup> groups) {
  const bool same = groups.size() == groups_.size() &&
                    std::equal(groups.begin(), groups.end(), groups_.begin(),
                               [](const ChartGroup& a, const ChartGroup& b) {
                                 return a.label == b.label && a.run_ids == b.run_ids;
                               });
  if (same) return;
  groups_ = std::move(groups);
  band_label_->setVisible(grouped());
  band_box_->setVisible(grouped());
  rebuild();
}

void ChartsPanel::set_band(Band b) {
  if (band_box_->currentIndex() != int(b)) {
    band_box_->setCurrentIndex(int(b));  // re-enters through the signal
    return;
  }
  if (b == band_) return;
  band_ = b;
  if (grouped()) {
    update_legend();
    refill_groups(true);
  }
}

std::vector<std::vector<CurvePoint>> ChartsPanel::group_points(const ChartGroup& g,
                                                               const std::string& metric) const {
  std::vector<std::vector<CurvePoint>> out;
  for (int64_t id : g.run_ids) {
    const auto it = runs_.find(id);
    if (it == runs_.end()) continue;
    const RunCurves& c = it->second.c;
    std::vector<CurvePoint> pts;
    const std::vector<double>* column = metric == "loss"             ? &c.loss
                                        : metric == "tokens_per_sec" ? &c.tokens_per_sec
                                        : metric == "grad_norm"      ? &c.grad_norm
                                        : metric == "learning_rate"  ? &c.learning_rate
                                                                     : nullptr;
    if (column) {
      pts.reserve(c.size());
      for (size_t i = 0; i < c.size(); ++i) pts.push_back({c.step[i], x_of(c, i), (*column)[i]});
    } else if (metric == "eval_loss") {
      for (const auto& [step, v] : c.evals) pts.push_back({step, eval_x(c, step), v});
    } else if (const auto e = c.extra.find(metric); e != c.extra.end()) {
      pts.reserve(e->second.size());
      for (const auto& [step, v] : e->second) pts.push_back({step, eval_x(c, step), v});
    }
    out.push_back(std::move(pts));
  }
  return out;
}

GroupCurve ChartsPanel::group_curve(size_t index, const std::string& metric) const {
  if (index >= groups_.size()) return {};
  return aggregate_curves(group_points(groups_[index], metric));
}

void ChartsPanel::set_group_points(PlotView* p, int series, int band, const GroupCurve& c) {
  QList<QPointF> mean, lo, hi;
  mean.reserve(qsizetype(c.size()));
  if (band >= 0) {
    lo.reserve(qsizetype(c.size()));
    hi.reserve(qsizetype(c.size()));
  }
  for (size_t i = 0; i < c.size(); ++i) {
    mean.append({c.x[i], c.mean[i]});
    if (band < 0) continue;
    const bool std_band = band_ == Band::kStd;
    lo.append({c.x[i], std_band ? c.mean[i] - c.std[i] : c.min[i]});
    hi.append({c.x[i], std_band ? c.mean[i] + c.std[i] : c.max[i]});
  }
  p->set_points(series, std::move(mean));
  if (band >= 0)
    p->set_band(band, std::move(lo), std::move(hi), QList<int>(c.n.begin(), c.n.end()));
}

void ChartsPanel::rebuild_groups() {
  update_legend();
  for (PlotView* p : plots()) p->clear_series();
  group_slots_.assign(groups_.size(), GroupSlot{});
  // Which groups have a shown run: only those are drawn.
  std::vector<bool> drawn(groups_.size(), false);
  for (size_t g = 0; g < groups_.size(); ++g)
    for (int64_t id : groups_[g].run_ids) drawn[g] = drawn[g] || runs_.count(id);
  // Bands first, so every group's line is drawn over every band.
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!drawn[g]) continue;
    GroupSlot& s = group_slots_[g];
    const QColor col = group_color(g);
    const QString& label = groups_[g].label;
    s.loss_band = loss_->add_band(label + " train", col);
    s.tps_band = tps_->add_band(label, col);
    s.grad_band = grad_->add_band(label, col);
    s.lr_band = lr_->add_band(label, col);
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!drawn[g]) continue;
    GroupSlot& s = group_slots_[g];
    const QColor col = group_color(g);
    const QString& label = groups_[g].label;
    s.loss = loss_->add_series(label + " train", col);
    s.eval = loss_->add_series(label + " eval", col,
                               PlotView::Style{.dashed = true, .markers = true, .smooth = false});
    s.tps = tps_->add_series(label, col);
    s.grad = grad_->add_series(label, col);
    s.lr = lr_->add_series(label, col, PlotView::Style{.smooth = false});
  }
  refill_groups(true);
}

void ChartsPanel::refill_groups(bool all) {
  const std::set<int64_t> grown = std::move(grown_);
  grown_.clear();
  if (!grouped()) return;
  for (size_t g = 0; g < groups_.size() && g < group_slots_.size(); ++g) {
    const GroupSlot& s = group_slots_[g];
    if (s.loss < 0) continue;  // no shown run
    const auto& ids = groups_[g].run_ids;
    if (!all && std::none_of(ids.begin(), ids.end(), [&](int64_t id) { return grown.count(id); }))
      continue;
    set_group_points(loss_, s.loss, s.loss_band, group_curve(g, "loss"));
    set_group_points(loss_, s.eval, -1, group_curve(g, "eval_loss"));
    set_group_points(tps_, s.tps, s.tps_band, group_curve(g, "tokens_per_sec"));
    set_group_points(grad_, s.grad, s.grad_band, group_curve(g, "grad_norm"));
    set_group_points(lr_, s.lr, s.lr_band, group_curve(g, "learning_rate"));
  }
  for (MetricChart& m : metric_charts_) fill_group_metric_chart(m);
  update_legend();  // "n to step S" follows growing runs
}

void ChartsPanel::fill_group_metric_chart(MetricChart& m) {
  m.plot->clear_series();
  m.series.clear();
  m.group_series.assign(groups_.size(), -1);
  m.group_bands.assign(groups_.size(), -1);
  m.plot->set_legend_visible(false);
  const std::string key = m.metric.toStdString();
  for (size_t g = 0; g < groups_.size() && g < group_slots_.size(); ++g)
    if (group_slots_[g].loss >= 0)
      m.group_bands[g] = m.plot->add_band(groups_[g].label, group_color(g));
  for (size_t g = 0; g < groups_.size() && g < group_slots_.size(); ++g) {
    if (group_slots_[g].loss < 0) continue;
    m.group_series[g] = m.plot->add_series(groups_[g].label, group_color(g));
    set_group_points(m.plot, m.group_series[g], m.group_bands[g], group_curve(g, key));
  }
}

void ChartsPanel::remove_run(int64_t id) {
  if (runs_.erase(id)) rebuild();
}

void ChartsPanel::clear() {
  runs_.clear();
  groups_.clear();
  group_slots_.clear();
  band_label_->hide();
  band_box_->hide();
  colors_.clear();
  update_legend();
  for (PlotView* p : plots()) {
    p->clear_series();
    p->reset_zoom();
  }
}

std::vector<int64_t> ChartsPanel::run_ids() const {
  std::vector<int64_t> out;
  for (const auto& [id, s] : runs_) out.push_back(id);
  return out;
}

const RunCurves* ChartsPanel::curves(int64_t id) const {
  auto it = runs_.find(id);
  return it == runs_.end() ? nullptr : &it->second.c;
}

void ChartsPanel::append_steps(int64_t id, const std::vector<StepMetrics>& steps) {
  auto it = runs_.find(id);
  if (it == runs_.end() || steps.empty()) return;
  Slot& s = it->second;
  const size_t from = s.c.size();
  for (const StepMetrics& m : steps) s.c.add(m);
  if (grouped()) {
    // Its group is re-aggregated, so a burst of live appends costs one pass.
    grown_.insert(id);
    if (!refill_timer_->isActive()) refill_timer_->start();
    return;
  }
  push_points(s, from);
  for (MetricChart& mc : metric_charts_) {
    const auto it = s.c.extra.find(mc.metric.toStdString());
    const auto ser = mc.series.find(id);
    if (it == s.c.extra.end() || ser == mc.series.end()) continue;
    // The points this batch of steps added: those past the batch's first step.
    const int64_t first = steps.front().step;
    auto p = std::lower_bound(it->second.begin(), it->second.end(),
                              std::pair<int64_t, double>(first, -HUGE_VAL));
    for (; p != it->second.end(); ++p)
      if (std::isfinite(p->second)) mc.plot->append(ser->second, eval_x(s.c, p->first), p->second);
  }
}

void ChartsPanel::append_evals(int64_t id, const std::vector<std::pair<int64_t, double>>& evals) {
  auto it = runs_.find(id);
  if (it == runs_.end() || evals.empty()) return;
  Slot& s = it->second;
  const size_t from = s.c.evals.size();
  s.c.evals.insert(s.c.evals.end(), evals.begin(), evals.end());
  if (grouped()) {
    grown_.insert(id);
    if (!refill_timer_->isActive()) refill_timer_->start();
    return;
  }
  push_evals(s, from);
}

void ChartsPanel::redraw_now() {
  if (refill_timer_->isActive()) {
    refill_timer_->stop();
    refill_groups(false);
  }
  for (PlotView* p : plots()) p->redraw_now();
}

void ChartsPanel::set_dark(bool on) {
  for (PlotView* p : plots()) p->set_dark(on);
  rebuild();  // the theme reset the series colours
}

bool ChartsPanel::export_image(const QString& path, QSize size, QString* error) {
  auto fail = [&](const QString& why) {
    if (error) *error = why;
    return false;
  };
  if (size.width() < 200 || size.height() < 150) return fail("export size is too small");
  redraw_now();
  const bool svg = path.endsWith(".svg", Qt::CaseInsensitive);
  // Legend strip at the top when several runs share the charts.
  const bool many = runs_.size() > 1 || grouped();
  const int legend_h = many ? 28 : 0;
  const int rows = int(plots().size() + 1) / 2;
  const QSize cell((size.width()) / 2, (size.height() - legend_h) / rows);
  auto paint = [&](QPainter& p) {
    p.fillRect(QRect(QPoint(0, 0), size), Qt::white);
    if (many) {
      QFont f = p.font();
      f.setPixelSize(14);
      p.setFont(f);
      int x = 8;
      for (const auto& [color, text] : legend_items()) {
        p.fillRect(QRect(x, 8, 12, 12), color);
        x += 16;
        p.setPen(Qt::black);
        p.drawText(QRect(x, 4, size.width(), 20), Qt::AlignLeft | Qt::AlignVCenter, text);
        x += p.fontMetrics().horizontalAdvance(text) + 16;
      }
    }
    // The on-screen legends are hidden with several runs; the strip names them.
    const std::vector<PlotView*> ps = plots();
    for (size_t i = 0; i < ps.size(); ++i) {
      const QRectF target(
          QPointF(double(int(i % 2) * cell.width()), double(legend_h + int(i / 2) * cell.height())),
          QSizeF(cell));
      ps[i]->render_to(&p, target);
    }
  };
  if (svg) {
    QSvgGenerator gen;
    gen.setFileName(path);
    gen.setSize(size);
    gen.setViewBox(QRect(QPoint(0, 0), size));
    gen.setTitle("Blocklab charts");
    QPainter p;
    if (!p.begin(&gen)) return fail("cannot write " + path);
    paint(p);
    p.end();
    if (!QFileInfo(path).exists() || QFileInfo(path).size() == 0)
      return fail("cannot write " + path);
    return true;
  }
  QImage img(size, QImage::Format_ARGB32_Premultiplied);
  QPainter p(&img);
  p.setRenderHint(QPainter::Antialiasing);
  p.setRenderHint(QPainter::TextAntialiasing);
  paint(p);
  p.end();
  if (!img.save(path, "PNG")) return fail("cannot write " + path);
  return true;
}

}  // namespace bl
