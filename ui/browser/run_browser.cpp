#include "browser/run_browser.h"

#include <QComboBox>
#include <QDateTime>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QStandardItemModel>
#include <QTabWidget>
#include <QTableView>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "browser/config_diff.h"
#include "browser/run_groups.h"
#include "browser/run_loader.h"
#include "plot/charts_panel.h"
#include "plot/export_dialog.h"
#include "sweep/sweep_dialog.h"

namespace bl {

namespace {

constexpr int kSortRole = Qt::UserRole + 1;
constexpr int kIdRole = Qt::UserRole + 2;
constexpr int kSearchRole = Qt::UserRole + 3;
constexpr int kStatusRole = Qt::UserRole + 4;
constexpr int kSweepRole = Qt::UserRole + 5;  // sweep id; 0 = a hand-started run
constexpr size_t kMaxCompared = 32;  // drawn at once (grouped or not); 20 keep the UI responsive

/// Status + free-text filter over the source model's column 0 roles.
class RunTableFilter : public QSortFilterProxyModel {
 public:
  using QSortFilterProxyModel::QSortFilterProxyModel;
  /// sweep: -1 = every run, 0 = runs of no sweep, else that sweep's runs.
  void set(const QString& status, const QString& text, qlonglong sweep) {
    status_ = status;
    text_ = text.trimmed();
    sweep_ = sweep;
    invalidateFilter();
  }

 protected:
  bool filterAcceptsRow(int row, const QModelIndex& parent) const override {
    const QModelIndex i = sourceModel()->index(row, 0, parent);
    if (!status_.isEmpty() && i.data(kStatusRole).toString() != status_) return false;
    if (sweep_ >= 0 && i.data(kSweepRole).toLongLong() != sweep_) return false;
    return text_.isEmpty() || i.data(kSearchRole).toString().contains(text_, Qt::CaseInsensitive);
  }

 private:
  QString status_, text_;
  qlonglong sweep_ = -1;
};

std::optional<double> summary_number(const RunRecord& r, const char* key) {
  if (r.summary.is_object() && r.summary.contains(key) && r.summary[key].is_number())
    return r.summary[key].get<double>();
  return std::nullopt;
}

QColor status_color(RunStatus s) {
  switch (s) {
    case RunStatus::kRunning:
      return QColor(25, 103, 210);
    case RunStatus::kCompleted:
      return QColor(30, 130, 50);
    case RunStatus::kStopped:
      return QColor(170, 110, 0);
    case RunStatus::kDiverged:
    case RunStatus::kFailed:
      return QColor(190, 30, 30);
    case RunStatus::kInterrupted:
      return QColor(110, 110, 110);
  }
  return QColor(0, 0, 0);
}

QString params_text(std::optional<int64_t> n) {
  if (!n) return "—";
  if (*n >= 1'000'000) return QString::number(double(*n) / 1e6, 'f', 2) + " M";
  if (*n >= 1'000) return QString::number(double(*n) / 1e3, 'f', 1) + " k";
  return QString::number(*n);
}

/// "2.1000 ± 0.0500", with "(n=k)" when only k of the group's n runs have the value.
QString mean_std_text(const Stats& s, size_t runs) {
  if (s.n == 0) return "—";
  QString t = QString("%1 ± %2").arg(s.mean, 0, 'f', 4).arg(s.std, 0, 'f', 4);
  if (size_t(s.n) < runs) t += QString(" (n=%1)").arg(s.n);
  return t;
}

/// GroupSpec <-> the "Group by" box's item data.
QString spec_data(const GroupSpec& g) {
  switch (g.by) {
    case GroupSpec::By::kNone:
      return "none";
    case GroupSpec::By::kConfigExceptSeed:
      return "config";
    case GroupSpec::By::kConfigField:
      return "field:" + QString::fromStdString(g.field);
    case GroupSpec::By::kTags:
      return "tags";
    case GroupSpec::By::kName:
      return g.pattern.empty() ? "name" : "pattern";
  }
  return "none";
}

QString tags_text(const std::vector<std::string>& tags) {
  QStringList l;
  for (const std::string& t : tags) l << QString::fromStdString(t);
  return l.join(", ");
}

}  // namespace

QString adapter_text(const RunRecord& r) {
  if (!r.summary.is_object() || !r.summary.contains("lora") || !r.summary["lora"].is_object())
    return {};
  const nlohmann::json& l = r.summary["lora"];
  QString text = "LoRA";
  if (l.contains("rank") && l["rank"].is_number_integer())
    text += QString(" r%1").arg(l["rank"].get<int64_t>());
  if (l.contains("targets") && l["targets"].is_array()) {
    QStringList t;
    for (const auto& v : l["targets"])
      if (v.is_string()) t << QString::fromStdString(v.get<std::string>());
    if (!t.empty()) text += " " + t.join(",");
  }
  if (l.contains("quantize") && l["quantize"].is_string())
    text += " " + QString::fromStdString(l["quantize"].get<std::string>());
  return text;
}

RunBrowser::RunBrowser(const std::string& db_path, QWidget* parent)
    : QWidget(parent), db_path_(db_path) {
  model_ = new QStandardItemModel(0, kColumns, this);
  model_->setHorizontalHeaderLabels({"ID", "Name", "Status", "Preset", "Base", "Adapter", "Params",
                                     "Best eval", "Tokens/s", "Date", "Tags", "Sweep"});
  proxy_ = new RunTableFilter(this);
  proxy_->setSourceModel(model_);
  proxy_->setSortRole(kSortRole);
  proxy_->setDynamicSortFilter(true);

  table_ = new QTableView;
  table_->setObjectName("runs_table");
  table_->setModel(proxy_);
  table_->setSortingEnabled(true);
  table_->sortByColumn(kId, Qt::DescendingOrder);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::ExtendedSelection);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->verticalHeader()->hide();
  table_->verticalHeader()->setDefaultSectionSize(22);
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->setAlternatingRowColors(true);
  table_->setColumnWidth(kId, 44);
  table_->setColumnWidth(kName, 170);
  table_->setColumnWidth(kStatus, 86);
  table_->setColumnWidth(kPreset, 90);
  table_->setColumnWidth(kBase, 50);
  table_->setColumnWidth(kAdapter, 120);
  table_->setColumnWidth(kParams, 70);
  table_->setColumnWidth(kBestEval, 76);
  table_->setColumnWidth(kTokensPerSec, 76);
  table_->setColumnWidth(kDate, 124);

  search_ = new QLineEdit;
  search_->setObjectName("search");
  search_->setPlaceholderText("Search name, preset, tags, notes…");
  search_->setClearButtonEnabled(true);
  status_ = new QComboBox;
  status_->setObjectName("status_filter");
  status_->addItem("all statuses", "");
  for (RunStatus s : {RunStatus::kRunning, RunStatus::kCompleted, RunStatus::kStopped,
                      RunStatus::kDiverged, RunStatus::kFailed, RunStatus::kInterrupted})
    status_->addItem(QString::fromLatin1(run_status_name(s)),
                     QString::fromLatin1(run_status_name(s)));
  sweep_ = new QComboBox;
  sweep_->setObjectName("sweep_filter");
  sweep_->addItem("all runs", qlonglong(-1));
  sweep_->addItem("no sweep", qlonglong(0));
  sweep_button_ = new QPushButton("Sweep…");
  sweep_button_->setObjectName("open_sweep_dialog");
  sweep_button_->setToolTip(
      "Run a sweep (grid / random axes, seeds, budget) in local worker processes");
  columns_button_ = new QPushButton("Columns…");
  columns_button_->setObjectName("config_columns");
  columns_button_->setToolTip(
      "Show configuration fields (learning rate, seed, d_model, ...) as columns of the table");
  group_box_ = new QComboBox;
  group_box_->setObjectName("group_by");
  group_box_->setToolTip(
      "Group runs (e.g. the same config over seeds): the groups table lists each group's runs "
      "with mean ± std of best eval and final loss; compared runs are drawn as each group's mean "
      "with a band");
  group_box_->addItem("no grouping", "none");
  group_box_->addItem("group: config except seed", "config");
  group_box_->addItem("group: tags", "tags");
  group_box_->addItem("group: name without seed / number", "name");
  group_box_->addItem("group: name pattern (regex)", "pattern");
  group_pattern_ = new QLineEdit;
  group_pattern_->setObjectName("group_pattern");
  group_pattern_->setPlaceholderText(R"(regex, e.g. ^(.*)-seed\d+$)");
  group_pattern_->setToolTip(
      "Runs whose names give the same first capture group (else the same match) form a group; "
      "names that do not match stay alone");
  group_pattern_->setMaximumWidth(180);
  group_pattern_->hide();
  count_ = new QLabel;
  auto* filter_row = new QHBoxLayout;
  filter_row->addWidget(search_, 1);
  filter_row->addWidget(status_);
  filter_row->addWidget(sweep_);
  filter_row->addWidget(sweep_button_);
  filter_row->addWidget(columns_button_);
  filter_row->addWidget(group_box_);
  filter_row->addWidget(group_pattern_);
  filter_row->addWidget(count_);

  // Details of the current run.
  details_title_ = new QLabel("Select a run");
  details_title_->setWordWrap(true);
  name_edit_ = new QLineEdit;
  name_edit_->setObjectName("run_name_edit");
  tags_edit_ = new QLineEdit;
  tags_edit_->setObjectName("tags_edit");
  tags_edit_->setPlaceholderText("comma,separated");
  notes_edit_ = new QPlainTextEdit;
  notes_edit_->setObjectName("notes_edit");
  notes_edit_->setPlaceholderText("Notes");
  save_ = new QPushButton("Save");
  save_->setObjectName("save_details");
  delete_ = new QPushButton("Delete…");
  delete_->setObjectName("delete_runs");
  open_ = new QPushButton("Open in composer");
  open_->setObjectName("open_in_composer");
  open_->setToolTip("Load this run's model and training configuration into the forms to fork it");
  resume_ = new QPushButton("Resume");
  resume_->setObjectName("resume_run");
  resume_->setToolTip(
      "Continue this run from its newest checkpoint to its step budget (as blocklab-cli train "
      "--resume)");
  png_ = new QPushButton("Export chart…");
  png_->setToolTip("The compared charts alone (no controls), PNG or SVG, at a chosen size");
  png_->setObjectName("export_png");
  csv_ = new QPushButton("Export metrics CSV…");
  csv_->setObjectName("export_csv");
  message_ = new QLabel;
  message_->setObjectName("browser_message");
  message_->setWordWrap(true);

  auto* details = new QWidget;
  auto* dl = new QVBoxLayout(details);
  dl->setContentsMargins(4, 4, 4, 4);
  dl->addWidget(details_title_);
  auto* form = new QFormLayout;
  form->addRow("Name", name_edit_);
  form->addRow("Tags", tags_edit_);
  dl->addLayout(form);
  dl->addWidget(notes_edit_, 1);
  auto* b1 = new QHBoxLayout;
  b1->addWidget(save_);
  b1->addWidget(delete_);
  dl->addLayout(b1);
  dl->addWidget(open_);
  dl->addWidget(resume_);
  auto* b2 = new QHBoxLayout;
  b2->addWidget(png_);
  b2->addWidget(csv_);
  dl->addLayout(b2);
  dl->addWidget(message_);
  details->setMinimumWidth(250);
  details->setMaximumWidth(340);

  charts_ = new ChartsPanel;
  charts_->setObjectName("compare_charts");
  diff_ = new QTableWidget;
  diff_->setObjectName("config_diff");
  diff_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  diff_->verticalHeader()->hide();
  diff_->horizontalHeader()->setStretchLastSection(true);
  tabs_ = new QTabWidget;
  tabs_->addTab(charts_, "Curves");
  tabs_->addTab(diff_, "Config diff");

  groups_table_ = new QTableWidget(0, kGroupColumns);
  groups_table_->setObjectName("groups_table");
  groups_table_->setHorizontalHeaderLabels({"Group", "Runs", "Best eval (mean ± std)",
                                            "Best eval min – max", "Final train loss (mean ± std)",
                                            "Run IDs"});
  groups_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  groups_table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  groups_table_->verticalHeader()->hide();
  groups_table_->verticalHeader()->setDefaultSectionSize(22);
  groups_table_->horizontalHeader()->setStretchLastSection(true);
  groups_table_->setToolTip("Select groups to compare their runs");
  groups_table_->hide();

  auto* top = new QWidget;
  auto* tl = new QVBoxLayout(top);
  tl->setContentsMargins(0, 0, 0, 0);
  tl->addLayout(filter_row);
  auto* tables = new QSplitter(Qt::Vertical);
  tables->addWidget(table_);
  tables->addWidget(groups_table_);
  tables->setStretchFactor(0, 3);
  tables->setStretchFactor(1, 2);
  tl->addWidget(tables, 1);
  auto* bottom = new QSplitter(Qt::Horizontal);
  bottom->addWidget(details);
  bottom->addWidget(tabs_);
  bottom->setStretchFactor(1, 1);
  auto* split = new QSplitter(Qt::Vertical);
  split->addWidget(top);
  split->addWidget(bottom);
  split->setStretchFactor(0, 2);
  split->setStretchFactor(1, 3);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addWidget(split);

  auto refilter = [this] {
    static_cast<RunTableFilter*>(proxy_)->set(status_->currentData().toString(), search_->text(),
                                              sweep_->currentData().toLongLong());
    count_->setText(QString("%1 of %2 runs").arg(proxy_->rowCount()).arg(model_->rowCount()));
    groups_dirty_ = true;
    update_groups();
  };
  connect(search_, &QLineEdit::textChanged, this, refilter);
  connect(group_box_, &QComboBox::activated, this, [this] {
    const QString d = group_box_->currentData().toString();
    GroupSpec g;
    if (d == "config") g.by = GroupSpec::By::kConfigExceptSeed;
    if (d == "tags") g.by = GroupSpec::By::kTags;
    if (d == "name") g.by = GroupSpec::By::kName;
    if (d == "pattern") {
      g.by = GroupSpec::By::kName;
      g.pattern = group_pattern_->text().toStdString();
      group_pattern_->show();
      group_pattern_->setFocus();
      if (g.pattern.empty()) return;  // waits for a pattern
    }
    if (d.startsWith("field:")) {
      g.by = GroupSpec::By::kConfigField;
      g.field = d.mid(6).toStdString();
    }
    set_grouping(g);
  });
  connect(group_pattern_, &QLineEdit::editingFinished, this, [this] {
    if (group_box_->currentData().toString() != "pattern") return;
    set_grouping({.by = GroupSpec::By::kName, .pattern = group_pattern_->text().toStdString()});
  });
  connect(groups_table_, &QTableWidget::itemSelectionChanged, this, [this] {
    // Selecting groups selects (and so compares) their runs.
    std::vector<int64_t> ids;
    for (const QModelIndex& i : groups_table_->selectionModel()->selectedRows())
      if (size_t(i.row()) < visible_groups_.size())
        for (int64_t id : visible_groups_[size_t(i.row())].run_ids) ids.push_back(id);
    if (!ids.empty()) select_runs(ids);
  });
  connect(status_, &QComboBox::currentIndexChanged, this, refilter);
  connect(sweep_, &QComboBox::currentIndexChanged, this, refilter);
  connect(columns_button_, &QPushButton::clicked, this, [this] {
    // One checkable entry per config field of the runs read; picking one
    // toggles its column.
    QMenu menu(this);
    for (const std::string& p : config_paths()) {
      QAction* a = menu.addAction(QString::fromStdString(p));
      a->setCheckable(true);
      a->setChecked(std::find(config_columns_.begin(), config_columns_.end(), p) !=
                    config_columns_.end());
    }
    if (menu.isEmpty()) menu.addAction("(no runs yet)")->setEnabled(false);
    QAction* picked = menu.exec(columns_button_->mapToGlobal(QPoint(0, columns_button_->height())));
    if (!picked || !picked->isCheckable()) return;
    std::vector<std::string> cols = config_columns_;
    const std::string p = picked->text().toStdString();
    if (picked->isChecked())
      cols.push_back(p);
    else
      cols.erase(std::remove(cols.begin(), cols.end(), p), cols.end());
    set_config_columns(std::move(cols));
  });
  connect(sweep_button_, &QPushButton::clicked, this, [this] {
    auto* d = new SweepDialog(db_path_, this);
    d->setAttribute(Qt::WA_DeleteOnClose);
    connect(d, &SweepDialog::sweep_finished, this, &RunBrowser::refresh);
    connect(d, &SweepDialog::sweep_submitted, this, &RunBrowser::refresh);
    d->show();
  });
  connect(table_->selectionModel(), &QItemSelectionModel::selectionChanged, this,
          &RunBrowser::selection_changed);
  connect(table_->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
          &RunBrowser::update_details);
  connect(table_, &QTableView::doubleClicked, this, [this](const QModelIndex& i) {
    if (i.column() != kBase) return;
    const auto r = run(proxy_->index(i.row(), 0).data(kIdRole).toLongLong());
    if (r && r->parent_run_id) select_runs({*r->parent_run_id});
  });
  connect(save_, &QPushButton::clicked, this, [this] {
    const int64_t id = current_id();
    if (!id) return;
    QStringList tags;
    for (const QString& t : tags_edit_->text().split(',', Qt::SkipEmptyParts))
      if (!t.trimmed().isEmpty()) tags << t.trimmed();
    if (rename(id, name_edit_->text().trimmed()) && set_tags(id, tags) &&
        set_notes(id, notes_edit_->toPlainText()))
      set_message(QString("Saved run #%1.").arg(id), false);
  });
  connect(delete_, &QPushButton::clicked, this, [this] {
    const std::vector<int64_t> ids = selected_ids();
    if (ids.empty()) return;
    const auto answer = QMessageBox::question(
        this, "Delete runs",
        QString("Delete %1 run(s) and all their metrics, samples and checkpoint records?")
            .arg(ids.size()));
    if (answer == QMessageBox::Yes) delete_runs(ids);
  });
  connect(open_, &QPushButton::clicked, this, [this] {
    if (auto r = run(current_id())) emit open_in_composer(*r);
  });
  connect(resume_, &QPushButton::clicked, this, [this] {
    if (auto r = run(current_id())) emit resume_requested(*r);
  });
  connect(png_, &QPushButton::clicked, this, [this] {
    QString error;
    const QString f = export_charts_interactive(this, charts_, "runs", &error);
    if (!f.isEmpty())
      set_message("Chart saved to " + f, false);
    else if (!error.isEmpty())
      set_message(error, true);
  });
  connect(csv_, &QPushButton::clicked, this, [this] {
    const QString f =
        QFileDialog::getSaveFileName(this, "Export metrics", "metrics.csv", "CSV (*.csv)");
    if (!f.isEmpty()) export_csv(f);
  });

  poll_ = new QTimer(this);
  poll_->setInterval(1000);
  connect(poll_, &QTimer::timeout, this, &RunBrowser::refresh);
  poll_->start();
  refresh();
  update_details();
}

RunBrowser::~RunBrowser() = default;

bool RunBrowser::open_reader() {
  if (reader_) return true;
  try {
    reader_ = std::make_unique<ExperimentStore>(ExperimentStore::open_readonly(db_path_));
    return true;
  } catch (const std::exception& e) {
    count_->setText("no runs yet");
    count_->setToolTip(QString::fromStdString(e.what()));
    return false;
  }
}

void RunBrowser::refresh() {
  if (!open_reader()) return;
  std::vector<RunRecord> list;
  try {
    list = reader_->list_runs();
  } catch (const std::exception& e) {
    set_message(QString("Cannot read %1: %2")
                    .arg(QString::fromStdString(db_path_), QString::fromStdString(e.what())),
                true);
    reader_.reset();  // reopen on the next poll
    return;
  }
  std::set<int64_t> present;
  for (const RunRecord& r : list) {
    present.insert(r.id);
    update_row(r);
  }
  // Runs deleted elsewhere.
  for (int row = model_->rowCount() - 1; row >= 0; --row) {
    const int64_t id = model_->item(row, 0)->data(kIdRole).toLongLong();
    if (!present.count(id)) {
      model_->removeRow(row);
      runs_.erase(id);
      groups_dirty_ = fields_dirty_ = true;
    }
  }
  count_->setText(QString("%1 of %2 runs").arg(proxy_->rowCount()).arg(model_->rowCount()));
  if (groups_dirty_) {
    update_groups();
    if (grouping_.by != GroupSpec::By::kNone) update_compare();  // a renamed / retagged run
  }
  poll_curves();
}

void RunBrowser::update_row(const RunRecord& r) {
  auto old = runs_.find(r.id);
  const bool changed = old == runs_.end() || old->second.status != r.status ||
                       old->second.name != r.name || old->second.tags != r.tags ||
                       old->second.notes != r.notes || old->second.summary != r.summary;
  fields_dirty_ = fields_dirty_ || old == runs_.end();
  runs_[r.id] = r;
  if (!changed) return;
  groups_dirty_ = true;
  int row = -1;
  for (int i = 0; i < model_->rowCount(); ++i)
    if (model_->item(i, 0)->data(kIdRole).toLongLong() == r.id) {
      row = i;
      break;
    }
  if (row < 0) {
    QList<QStandardItem*> items;
    for (int c = 0; c < model_->columnCount(); ++c) items << new QStandardItem;
    model_->appendRow(items);
    row = model_->rowCount() - 1;
  }
  auto set = [&](Column c, const QString& text, const QVariant& sort) {
    QStandardItem* it = model_->item(row, c);
    it->setText(text);
    it->setData(sort, kSortRole);
  };
  const QString status = QString::fromLatin1(run_status_name(r.status));
  const auto best = summary_number(r, "best_val_loss");
  const auto tps = summary_number(r, "tokens_per_sec");
  const QString tags = tags_text(r.tags);
  set(kId, QString::number(r.id), qlonglong(r.id));
  set(kName, QString::fromStdString(r.name), QString::fromStdString(r.name).toLower());
  set(kStatus, status, status);
  set(kPreset, QString::fromStdString(r.preset), QString::fromStdString(r.preset));
  const QString adapter = adapter_text(r);
  if (r.parent_run_id) {
    const auto parent = runs_.find(*r.parent_run_id);
    set(kBase, QString("#%1").arg(*r.parent_run_id), qlonglong(*r.parent_run_id));
    model_->item(row, kBase)
        ->setToolTip(QString("%1 #%2%3 (double-click to select it)")
                         .arg(adapter.isEmpty() ? "Forked from run" : "Fine-tune of run")
                         .arg(*r.parent_run_id)
                         .arg(parent == runs_.end()
                                  ? QString(" (deleted)")
                                  : " " + QString::fromStdString(parent->second.name)));
  } else {
    set(kBase, "", qlonglong(0));
  }
  set(kAdapter, adapter, adapter);
  if (!adapter.isEmpty() && r.summary["lora"].contains("adapter") &&
      r.summary["lora"]["adapter"].is_string())
    model_->item(row, kAdapter)
        ->setToolTip("Adapter: " +
                     QString::fromStdString(r.summary["lora"]["adapter"].get<std::string>()));
  set(kParams, params_text(r.param_count), qlonglong(r.param_count.value_or(-1)));
  set(kBestEval, best ? QString::number(*best, 'f', 4) : "—", best.value_or(1e300));
  set(kTokensPerSec, tps ? QString::number(*tps, 'f', 0) : "—", tps.value_or(-1));
  set(kDate, QDateTime::fromSecsSinceEpoch(qint64(r.created_at)).toString("yyyy-MM-dd hh:mm"),
      r.created_at);
  set(kTags, tags, tags);
  if (r.sweep_id) {
    const qlonglong trial = r.sweep_trial.value_or(0);
    set(kSweep, QString("#%1 / %2").arg(*r.sweep_id).arg(trial),
        qlonglong(*r.sweep_id) * 10'000'000 + trial);
    if (sweep_->findData(qlonglong(*r.sweep_id)) < 0)
      sweep_->addItem(QString("sweep %1").arg(*r.sweep_id), qlonglong(*r.sweep_id));
  } else {
    set(kSweep, "", qlonglong(-1));
  }
  model_->item(row, 0)->setData(qlonglong(r.sweep_id.value_or(0)), kSweepRole);
  fill_config_cells(row, r);
  model_->item(row, kStatus)->setForeground(status_color(r.status));
  // The name takes its curve's colour while the run is in the compare charts.
  const QColor curve = charts_->color_of(r.id);
  model_->item(row, kName)->setForeground(curve.isValid() ? QBrush(curve) : QBrush());
  model_->item(row, kStatus)->setToolTip(QString::fromStdString(r.status_message));
  QStandardItem* key = model_->item(row, 0);
  key->setData(qlonglong(r.id), kIdRole);
  key->setData(status, kStatusRole);
  key->setData(QString("#%1 %2 %3 %4 %5 %6")
                   .arg(r.id)
                   .arg(QString::fromStdString(r.name), QString::fromStdString(r.preset), tags,
                        QString::fromStdString(r.notes), adapter),
               kSearchRole);
  if (current_id() == r.id) update_details();
}

int RunBrowser::visible_rows() const {
  return proxy_->rowCount();
}

std::vector<int64_t> RunBrowser::visible_ids() const {
  std::vector<int64_t> out;
  for (int i = 0; i < proxy_->rowCount(); ++i)
    out.push_back(proxy_->index(i, 0).data(kIdRole).toLongLong());
  return out;
}

std::vector<int64_t> RunBrowser::selected_ids() const {
  std::vector<int64_t> out;
  for (const QModelIndex& i : table_->selectionModel()->selectedRows(0))
    out.push_back(i.data(kIdRole).toLongLong());
  std::sort(out.begin(), out.end());
  return out;
}

void RunBrowser::select_runs(const std::vector<int64_t>& ids) {
  QItemSelection sel;
  QModelIndex first;
  for (int i = 0; i < proxy_->rowCount(); ++i) {
    const QModelIndex idx = proxy_->index(i, 0);
    if (std::find(ids.begin(), ids.end(), idx.data(kIdRole).toLongLong()) == ids.end()) continue;
    sel.select(idx, proxy_->index(i, proxy_->columnCount() - 1));
    if (!first.isValid()) first = idx;
  }
  table_->selectionModel()->setCurrentIndex(first, QItemSelectionModel::NoUpdate);
  table_->selectionModel()->select(sel, QItemSelectionModel::ClearAndSelect);
  update_details();
}

std::optional<RunRecord> RunBrowser::run(int64_t id) const {
  auto it = runs_.find(id);
  if (it == runs_.end()) return std::nullopt;
  return it->second;
}

void RunBrowser::set_config_columns(std::vector<std::string> paths) {
  config_columns_ = std::move(paths);
  model_->setColumnCount(kColumns + int(config_columns_.size()));
  for (size_t i = 0; i < config_columns_.size(); ++i)
    model_->setHorizontalHeaderItem(kColumns + int(i),
                                    new QStandardItem(QString::fromStdString(config_columns_[i])));
  for (int row = 0; row < model_->rowCount(); ++row) {
    const auto r = runs_.find(model_->item(row, 0)->data(kIdRole).toLongLong());
    if (r != runs_.end()) fill_config_cells(row, r->second);
  }
  for (size_t i = 0; i < config_columns_.size(); ++i)
    table_->resizeColumnToContents(kColumns + int(i));  // the header path readable
}

void RunBrowser::fill_config_cells(int row, const RunRecord& r) {
  if (config_columns_.empty()) return;
  std::map<std::string, std::string> values;
  for (auto& [path, v] : flatten_json(comparable_config(r))) values[path] = v;
  for (size_t i = 0; i < config_columns_.size(); ++i) {
    const int col = kColumns + int(i);
    QStandardItem* it = model_->item(row, col);
    if (!it) model_->setItem(row, col, it = new QStandardItem);
    const auto v = values.find(config_columns_[i]);
    const QString text = v == values.end() ? "—" : QString::fromStdString(v->second);
    bool numeric = false;
    const double x = text.toDouble(&numeric);
    it->setText(text);
    // Numbers before text, in numeric order; absent fields last.
    it->setData(numeric ? QVariant(x) : QVariant(text), kSortRole);
  }
}

QString RunBrowser::config_cell(int64_t id, const std::string& path) const {
  const auto c = std::find(config_columns_.begin(), config_columns_.end(), path);
  if (c == config_columns_.end()) return {};
  for (int i = 0; i < model_->rowCount(); ++i)
    if (model_->item(i, 0)->data(kIdRole).toLongLong() == id) {
      const QStandardItem* it = model_->item(i, kColumns + int(c - config_columns_.begin()));
      return it ? it->text() : QString();
    }
  return {};
}

std::vector<std::string> RunBrowser::config_paths() const {
  std::set<std::string> paths;
  for (const auto& [id, r] : runs_)
    for (auto& [path, v] : flatten_json(comparable_config(r))) paths.insert(path);
  return {paths.begin(), paths.end()};
}

QString RunBrowser::cell(int64_t id, Column column) const {
  for (int i = 0; i < model_->rowCount(); ++i)
    if (model_->item(i, 0)->data(kIdRole).toLongLong() == id)
      return model_->item(i, column)->text();
  return {};
}

int64_t RunBrowser::current_id() const {
  const QModelIndex cur = table_->selectionModel()->currentIndex();
  if (cur.isValid() && table_->selectionModel()->isRowSelected(cur.row(), QModelIndex()))
    return proxy_->index(cur.row(), 0).data(kIdRole).toLongLong();
  const std::vector<int64_t> sel = selected_ids();
  return sel.empty() ? 0 : sel.front();
}

void RunBrowser::selection_changed() {
  update_details();
  update_compare();
}

void RunBrowser::update_details() {
  const int64_t id = current_id();
  const auto r = run(id);
  for (QWidget* w :
       std::initializer_list<QWidget*>{name_edit_, tags_edit_, notes_edit_, save_, open_})
    w->setEnabled(bool(r));
  // Runs that ended before their step budget: stopped, interrupted, failed.
  resume_->setEnabled(r && r->status != RunStatus::kRunning && r->status != RunStatus::kCompleted &&
                      r->status != RunStatus::kDiverged);
  delete_->setEnabled(!selected_ids().empty());
  const bool any = !selected_ids().empty();
  png_->setEnabled(any);
  csv_->setEnabled(any);
  if (!r) {
    details_title_->setText("Select runs (Ctrl/Shift-click several to compare them)");
    name_edit_->clear();
    tags_edit_->clear();
    notes_edit_->clear();
    return;
  }
  QString title = QString("<b>#%1 %2</b> · %3")
                      .arg(r->id)
                      .arg(QString::fromStdString(r->name).toHtmlEscaped(),
                           QString::fromLatin1(run_status_name(r->status)));
  if (r->parent_run_id) {
    const auto parent = run(*r->parent_run_id);
    const QString adapter = adapter_text(*r);
    title += QString("<br><small>%1 #%2%3%4</small>")
                 .arg(adapter.isEmpty() ? "fork of" : "fine-tune of")
                 .arg(*r->parent_run_id)
                 .arg(parent ? " " + QString::fromStdString(parent->name).toHtmlEscaped() : "")
                 .arg(adapter.isEmpty() ? "" : " · " + adapter.toHtmlEscaped());
  }
  if (!r->status_message.empty())
    title += "<br><small>" + QString::fromStdString(r->status_message).toHtmlEscaped() + "</small>";
  details_title_->setText(title);
  if (!name_edit_->hasFocus()) name_edit_->setText(QString::fromStdString(r->name));
  if (!tags_edit_->hasFocus()) tags_edit_->setText(tags_text(r->tags));
  if (!notes_edit_->hasFocus()) notes_edit_->setPlainText(QString::fromStdString(r->notes));
}

void RunBrowser::update_compare() {
  std::vector<int64_t> ids = selected_ids();
  if (ids.size() > kMaxCompared) ids.resize(kMaxCompared);
  for (int64_t id : charts_->run_ids())
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
      charts_->remove_run(id);
      loaded_step_.erase(id);
    }
  std::vector<RunCurves> loaded;
  for (int64_t id : ids) {
    if (charts_->has_run(id) || !reader_) continue;
    const auto r = run(id);
    if (!r) continue;
    try {
      RunCurves c = load_run_curves(*reader_, *r);
      loaded_step_[id] = c.size() ? c.step.back() : -1;
      loaded.push_back(std::move(c));
    } catch (const std::exception& e) {
      set_message(QString::fromStdString(e.what()), true);
    }
  }
  // Groups first: the new runs are drawn once, already in their groups.
  std::vector<ChartGroup> groups;
  if (grouping_.by != GroupSpec::By::kNone)
    for (const RunGroup& g : groups_of(ids))
      groups.push_back({QString::fromStdString(g.label), g.run_ids});
  charts_->set_groups(std::move(groups));
  charts_->set_runs(std::move(loaded));
  color_group_rows();
  for (int row = 0; row < model_->rowCount(); ++row) {
    QStandardItem* name = model_->item(row, kName);
    const QColor curve = charts_->color_of(model_->item(row, 0)->data(kIdRole).toLongLong());
    if (name->foreground() != (curve.isValid() ? QBrush(curve) : QBrush()))
      name->setForeground(curve.isValid() ? QBrush(curve) : QBrush());
  }
  update_diff();
}

std::vector<RunGroup> RunBrowser::groups_of(const std::vector<int64_t>& ids) {
  std::vector<RunRecord> records;
  for (int64_t id : ids)
    if (const auto it = runs_.find(id); it != runs_.end()) records.push_back(it->second);
  try {
    return group_runs(records, grouping_);
  } catch (const std::regex_error& e) {
    set_message(QString("Invalid name pattern: %1").arg(e.what()), true);
    return {};
  }
}

void RunBrowser::set_grouping(const GroupSpec& spec) {
  grouping_ = spec;
  const QString data = spec_data(spec);
  if (spec.by == GroupSpec::By::kConfigField && group_box_->findData(data) < 0)
    group_box_->addItem("group: " + QString::fromStdString(spec.field), data);
  group_box_->setCurrentIndex(std::max(0, group_box_->findData(data)));
  group_pattern_->setVisible(data == "pattern");
  if (data == "pattern") group_pattern_->setText(QString::fromStdString(spec.pattern));
  groups_dirty_ = true;
  update_groups();
  update_compare();
}

void RunBrowser::update_groups() {
  if (!groups_dirty_) return;
  groups_dirty_ = false;
  // "Group by" offers the config fields whose values differ between runs
  // (not redone per keystroke in the search box: configs never change).
  std::vector<nlohmann::json> configs;
  if (fields_dirty_)
    for (const auto& [id, r] : runs_) configs.push_back(comparable_config(r));
  fields_dirty_ = false;
  if (configs.size() >= 2)
    for (const DiffRow& row : config_diff(configs)) {
      const QString data = "field:" + QString::fromStdString(row.field);
      if (group_box_->findData(data) < 0)
        group_box_->addItem("group: " + QString::fromStdString(row.field), data);
    }
  const bool on = grouping_.by != GroupSpec::By::kNone;
  groups_table_->setVisible(on);
  visible_groups_ = on ? groups_of(visible_ids()) : std::vector<RunGroup>{};
  const QSignalBlocker block(groups_table_);  // refilling is no selection by the user
  groups_table_->setRowCount(int(visible_groups_.size()));
  for (int row = 0; row < int(visible_groups_.size()); ++row) {
    const RunGroup& g = visible_groups_[size_t(row)];
    std::vector<double> best, final_loss;
    QStringList ids;
    for (int64_t id : g.run_ids) {
      const RunRecord& r = runs_.at(id);
      if (const auto b = summary_number(r, "best_val_loss")) best.push_back(*b);
      if (const auto f = summary_number(r, "final_train_loss")) final_loss.push_back(*f);
      ids << QString("#%1").arg(id);
    }
    const Stats b = stats_of(best), f = stats_of(final_loss);
    auto set = [&](int col, const QString& text) {
      auto* it = new QTableWidgetItem(text);
      if (col != kGroupLabel && col != kGroupIds) it->setTextAlignment(Qt::AlignCenter);
      groups_table_->setItem(row, col, it);
    };
    set(kGroupLabel, QString::fromStdString(g.label));
    groups_table_->item(row, kGroupLabel)->setToolTip(QString::fromStdString(g.label));
    set(kGroupRuns, QString::number(g.run_ids.size()));
    set(kGroupBestEval, mean_std_text(b, g.run_ids.size()));
    set(kGroupBestRange,
        b.n ? QString("%1 – %2").arg(b.min, 0, 'f', 4).arg(b.max, 0, 'f', 4) : QString("—"));
    set(kGroupFinalLoss, mean_std_text(f, g.run_ids.size()));
    set(kGroupIds, ids.join(" "));
  }
  if (groups_table_->columnWidth(kGroupLabel) < 220)
    groups_table_->setColumnWidth(kGroupLabel, 260);
  for (int c = kGroupRuns; c < kGroupIds; ++c) groups_table_->resizeColumnToContents(c);
  color_group_rows();
}

void RunBrowser::color_group_rows() {
  for (int row = 0; row < groups_table_->rowCount() && size_t(row) < visible_groups_.size();
       ++row) {
    QColor c;
    for (int64_t id : visible_groups_[size_t(row)].run_ids)
      if ((c = charts_->color_of(id)).isValid()) break;
    groups_table_->item(row, kGroupLabel)->setForeground(c.isValid() ? QBrush(c) : QBrush());
  }
}

void RunBrowser::poll_curves() {
  // Selected runs that are still training (here or in another process) grow.
  for (int64_t id : charts_->run_ids()) {
    const auto r = run(id);
    if (!r || !reader_) continue;
    const int64_t after = loaded_step_.count(id) ? loaded_step_[id] : -1;
    try {
      const auto latest = reader_->latest_step(id);
      if (!latest || *latest <= after) continue;
      RunCurves c = load_run_curves(*reader_, *r, after);
      if (!c.size()) continue;
      std::vector<StepMetrics> steps(c.size());
      for (size_t i = 0; i < c.size(); ++i) {
        steps[i].step = c.step[i];
        steps[i].wall_time_s = c.wall[i];
        steps[i].tokens_seen = int64_t(c.tokens[i]);
        steps[i].loss = c.loss[i];
        steps[i].tokens_per_sec = c.tokens_per_sec[i];
        steps[i].grad_norm = c.grad_norm[i];
        steps[i].learning_rate = c.learning_rate[i];
      }
      charts_->append_steps(id, steps);
      charts_->append_evals(id, c.evals);
      loaded_step_[id] = c.step.back();
    } catch (const std::exception&) {
      // Transient read failure: retried at the next poll.
    }
  }
}

void RunBrowser::update_diff() {
  std::vector<int64_t> ids = selected_ids();
  std::vector<nlohmann::json> configs;
  QStringList headers{"field"};
  for (int64_t id : ids)
    if (const auto r = run(id)) {
      configs.push_back(comparable_config(*r));
      headers << QString("#%1 %2").arg(id).arg(QString::fromStdString(r->name));
    }
  diff_->clear();
  diff_->setColumnCount(int(headers.size()));
  diff_->setHorizontalHeaderLabels(headers);
  if (configs.size() < 2) {
    diff_->setRowCount(1);
    diff_->setItem(0, 0, new QTableWidgetItem("Select two or more runs to compare their configs"));
    return;
  }
  const std::vector<DiffRow> rows = config_diff(configs);
  if (rows.empty()) {
    diff_->setRowCount(1);
    diff_->setItem(0, 0, new QTableWidgetItem("(identical configurations)"));
    return;
  }
  diff_->setRowCount(int(rows.size()));
  for (int i = 0; i < int(rows.size()); ++i) {
    diff_->setItem(i, 0, new QTableWidgetItem(QString::fromStdString(rows[size_t(i)].field)));
    for (size_t c = 0; c < rows[size_t(i)].values.size(); ++c)
      diff_->setItem(i, int(c) + 1,
                     new QTableWidgetItem(QString::fromStdString(rows[size_t(i)].values[c])));
  }
  diff_->resizeColumnsToContents();
}

bool RunBrowser::write(const std::function<void(ExperimentStore&)>& fn) {
  try {
    StoreOptions opt;
    opt.recover_interrupted = false;
    ExperimentStore w(db_path_, opt);
    fn(w);
    w.close();
  } catch (const std::exception& e) {
    set_message(QString::fromStdString(e.what()), true);
    return false;
  }
  refresh();
  return true;
}

bool RunBrowser::set_tags(int64_t id, const QStringList& tags) {
  std::vector<std::string> t;
  for (const QString& s : tags) t.push_back(s.toStdString());
  return write([&](ExperimentStore& w) { w.set_tags(id, t); });
}

bool RunBrowser::set_notes(int64_t id, const QString& notes) {
  return write([&](ExperimentStore& w) { w.set_notes(id, notes.toStdString()); });
}

bool RunBrowser::rename(int64_t id, const QString& name) {
  if (name.isEmpty()) {
    set_message("A run needs a name.", true);
    return false;
  }
  return write([&](ExperimentStore& w) { w.set_name(id, name.toStdString()); });
}

bool RunBrowser::delete_runs(const std::vector<int64_t>& ids) {
  for (int64_t id : ids)
    if (const auto r = run(id); r && r->status == RunStatus::kRunning) {
      set_message(QString("Run #%1 is still running; stop it before deleting it.").arg(id), true);
      return false;
    }
  const bool ok = write([&](ExperimentStore& w) {
    for (int64_t id : ids) w.delete_run(id);
  });
  if (ok) set_message(QString("Deleted %1 run(s).").arg(ids.size()), false);
  return ok;
}

bool RunBrowser::export_png(const QString& path) {
  QString error;
  if (!charts_->export_image(path, kExportSizes[0], &error)) {
    set_message(error, true);
    return false;
  }
  set_message("Chart saved to " + path, false);
  return true;
}

bool RunBrowser::export_csv(const QString& path) {
  const std::vector<int64_t> ids = selected_ids();
  if (ids.empty() || !open_reader()) {
    set_message("Select runs to export.", true);
    return false;
  }
  try {
    write_metrics_csv(*reader_, ids, path);
  } catch (const std::exception& e) {
    set_message(QString::fromStdString(e.what()), true);
    return false;
  }
  set_message(QString("Metrics of %1 run(s) saved to %2").arg(ids.size()).arg(path), false);
  return true;
}

void RunBrowser::set_message(const QString& text, bool error) {
  message_->setStyleSheet(error ? "color: #b00020;" : "color: #1e6e32;");
  message_->setText(text);
}

}  // namespace bl
