#include "inspect/heatmap_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSignalBlocker>
#include <QTimer>
#include <QVBoxLayout>

#include "inspect/heatmap_view.h"

namespace bl {

HeatmapPanel::HeatmapPanel(std::string db_path, QWidget* parent)
    : QWidget(parent), db_path_(std::move(db_path)) {
  runs_ = new QComboBox;
  runs_->setObjectName("heatmap_run");
  runs_->setMinimumContentsLength(24);
  runs_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  families_ = new QComboBox;
  families_->setObjectName("heatmap_family");
  families_->setMinimumContentsLength(18);
  families_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  families_->setToolTip(
      "diag/...: per parameter group every train.diagnostics_interval steps (grad norm before "
      "clipping, weight norm, update/weight ratio, effective rank per matrix); moe_load/layerN: "
      "the share of tokens each expert of layer N received");
  log_ = new QCheckBox("log scale");
  log_->setObjectName("heatmap_log");
  auto* refresh = new QPushButton("Refresh");
  view_ = new HeatmapView;
  readout_ = new QLabel(" ");
  readout_->setObjectName("heatmap_readout");
  readout_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  flags_ = new QLabel;
  flags_->setObjectName("heatmap_flags");
  flags_->setWordWrap(true);
  flags_->setStyleSheet("color: #c81e1e;");
  auto* top = new QHBoxLayout;
  top->addWidget(new QLabel("Run"));
  top->addWidget(runs_, 2);
  top->addWidget(new QLabel("Heatmap"));
  top->addWidget(families_, 1);
  top->addWidget(log_);
  top->addWidget(refresh);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(top);
  layout->addWidget(view_, 1);
  layout->addWidget(flags_);
  layout->addWidget(readout_);

  connect(runs_, &QComboBox::currentIndexChanged, this, [this] { load_families(); });
  connect(families_, &QComboBox::currentIndexChanged, this, [this] { load_grid(); });
  connect(log_, &QCheckBox::toggled, view_, &HeatmapView::set_log_scale);
  connect(refresh, &QPushButton::clicked, this, &HeatmapPanel::reload);
  connect(view_, &HeatmapView::hovered, this,
          [this](const QString& r) { readout_->setText(r.isEmpty() ? " " : r); });
  // A running run's heatmap grows: re-read it every 2 s while it runs.
  poll_ = new QTimer(this);
  poll_->setInterval(2000);
  connect(poll_, &QTimer::timeout, this, [this] {
    if (!isVisible() || runs_->currentIndex() < 0) return;
    if (runs_->currentData(Qt::UserRole + 1).toBool()) load_grid();
  });
  poll_->start();
  reload();
}

HeatmapPanel::~HeatmapPanel() = default;

ExperimentStore* HeatmapPanel::store() {
  if (!reader_) {
    try {
      reader_ = std::make_unique<ExperimentStore>(ExperimentStore::open_readonly(db_path_));
    } catch (const std::exception&) {
      return nullptr;  // no database yet
    }
  }
  return reader_.get();
}

void HeatmapPanel::reload() {
  ExperimentStore* s = store();
  const qlonglong keep = runs_->currentData().toLongLong();
  {
    const QSignalBlocker b(runs_);
    runs_->clear();
    if (s)
      for (const RunRecord& r : s->list_runs()) {
        runs_->addItem(QString("#%1 %2").arg(r.id).arg(QString::fromStdString(r.name)),
                       qlonglong(r.id));
        runs_->setItemData(runs_->count() - 1, r.status == RunStatus::kRunning, Qt::UserRole + 1);
      }
    int i = runs_->findData(keep);
    if (i < 0)  // else the newest run
      for (int k = 0; k < runs_->count(); ++k)
        if (i < 0 || runs_->itemData(k).toLongLong() > runs_->itemData(i).toLongLong()) i = k;
    runs_->setCurrentIndex(i);
  }
  load_families();
}

bool HeatmapPanel::select_run(int64_t run_id) {
  const int i = runs_->findData(qlonglong(run_id));
  if (i < 0) return false;
  runs_->setCurrentIndex(i);
  load_families();
  return true;
}

bool HeatmapPanel::select_family(const QString& family) {
  const int i = families_->findText(family);
  if (i < 0) return false;
  families_->setCurrentIndex(i);
  load_grid();
  return true;
}

void HeatmapPanel::load_families() {
  ExperimentStore* s = store();
  const QString keep = families_->currentText();
  family_list_.clear();
  if (s && runs_->currentIndex() >= 0)
    family_list_ = heatmap_families(s->metric_names(runs_->currentData().toLongLong()));
  {
    const QSignalBlocker b(families_);
    families_->clear();
    for (const HeatmapFamily& f : family_list_) families_->addItem(QString::fromStdString(f.name));
    int i = families_->findText(keep);
    if (i < 0) i = families_->findText("diag/grad_norm");  // the first thing to look at
    families_->setCurrentIndex(i >= 0 ? i : (family_list_.empty() ? -1 : 0));
  }
  if (family_list_.empty())
    families_->setPlaceholderText("no per-layer diagnostics or MoE load in this run");
  load_grid();
}

void HeatmapPanel::load_grid() {
  ExperimentStore* s = store();
  const int fi = families_->currentIndex();
  if (!s || fi < 0 || size_t(fi) >= family_list_.size()) {
    view_->set_grid({});
    flags_->clear();
    return;
  }
  const HeatmapFamily& f = family_list_[size_t(fi)];
  const int64_t run = runs_->currentData().toLongLong();
  std::vector<MetricSeries> series;
  for (const std::string& m : f.metrics) series.push_back(s->metrics(run, m));
  HeatmapGrid g = make_grid(f.rows, series);
  std::vector<int> flags;
  QStringList dead, over;
  if (is_moe_family(f.name)) {
    flags = flag_experts(g);
    for (size_t r = 0; r < flags.size(); ++r) {
      if (flags[r] < 0) dead << QString::fromStdString(g.rows[r]);
      if (flags[r] > 0) over << QString::fromStdString(g.rows[r]);
    }
  }
  QString text;
  if (!dead.isEmpty())
    text +=
        "Dead over the last 20 steps (under a tenth of the mean load): " + dead.join(", ") + ". ";
  if (!over.isEmpty()) text += "Overloaded (over twice the mean load): " + over.join(", ") + ".";
  flags_->setText(text);
  flags_->setVisible(!text.isEmpty());
  view_->set_grid(std::move(g), std::move(flags));
}

}  // namespace bl
