#include "plot/charts_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSlider>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <iterator>

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
}

QColor run_color(int64_t run_id) {
  static const QColor kPalette[] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  const int64_t n = int64_t(std::size(kPalette));
  return kPalette[((run_id % n) + n) % n];
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
  x_box_->addItems({"step", "wall time (s)", "tokens"});
  smooth_ = new QSlider(Qt::Horizontal);
  smooth_->setObjectName("smoothing");
  smooth_->setRange(0, 99);
  smooth_->setMaximumWidth(180);
  smooth_->setToolTip("EMA smoothing weight (the raw curve stays visible, faded)");
  smooth_label_ = new QLabel;
  smooth_label_->setMinimumWidth(32);
  log_ = new QCheckBox("log scale");
  log_->setObjectName("log_scale");
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
  bar->addStretch(1);
  bar->addWidget(reset);

  auto* grid = new QGridLayout;
  grid->setSpacing(4);
  grid->addWidget(loss_, 0, 0);
  grid->addWidget(tps_, 0, 1);
  grid->addWidget(grad_, 1, 0);
  grid->addWidget(lr_, 1, 1);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(bar);
  layout->addLayout(grid, 1);

  connect(x_box_, &QComboBox::currentIndexChanged, this, [this](int i) { set_x_axis(XAxis(i)); });
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

void ChartsPanel::add_series(Slot& s) {
  const bool many = runs_.size() > 1;
  const QColor col = run_color(s.c.id);
  const QString prefix = many ? QString("#%1 ").arg(s.c.id) : QString();
  s.loss = loss_->add_series(prefix + "train", col);
  s.eval = loss_->add_series(prefix + "eval", col.darker(190),
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

void ChartsPanel::rebuild() {
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
}

void ChartsPanel::add_run(int64_t id, const QString& name) {
  if (has_run(id)) return;
  Slot s;
  s.c.id = id;
  s.c.name = name;
  runs_[id] = std::move(s);
  rebuild();
}

void ChartsPanel::set_run(RunCurves c) {
  const int64_t id = c.id;
  runs_[id].c = std::move(c);
  rebuild();
}

void ChartsPanel::remove_run(int64_t id) {
  if (runs_.erase(id)) rebuild();
}

void ChartsPanel::clear() {
  runs_.clear();
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
  push_points(s, from);
}

void ChartsPanel::append_evals(int64_t id, const std::vector<std::pair<int64_t, double>>& evals) {
  auto it = runs_.find(id);
  if (it == runs_.end() || evals.empty()) return;
  Slot& s = it->second;
  const size_t from = s.c.evals.size();
  s.c.evals.insert(s.c.evals.end(), evals.begin(), evals.end());
  push_evals(s, from);
}

void ChartsPanel::redraw_now() {
  for (PlotView* p : plots()) p->redraw_now();
}

}  // namespace bl
