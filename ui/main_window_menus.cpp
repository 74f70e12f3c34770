// MainWindow's menu bar, keyboard shortcuts, theme and remembered settings
// (kept apart from main_window.cpp, which runs the training session).
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QKeySequence>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QSignalBlocker>
#include <QSlider>
#include <QStatusBar>
#include <QTabWidget>
#include <QUndoStack>
#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>

#include "arch/arch_panel.h"
#include "browser/run_browser.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/export_dialog.h"
#include "plot/plot_view.h"
#include "samples/samples_panel.h"
#include "theme.h"
#include "train/train_config.h"
#include "training/training_panel.h"

namespace bl {

namespace {

constexpr int kMaxRecent = 8;

/// INI in the user's config dir (~/.config/Blocklab/blocklab.ini): readable,
/// and redirected by QSettings::setPath in tests.
QSettings settings_store() {
  return QSettings(QSettings::IniFormat, QSettings::UserScope, "Blocklab", "blocklab");
}

QAction* add(QMenu* menu, const QString& text, const QString& name, const QKeySequence& key,
             QObject* ctx, std::function<void()> fn) {
  QAction* a = menu->addAction(text);
  a->setObjectName(name);
  if (!key.isEmpty()) a->setShortcut(key);
  QObject::connect(a, &QAction::triggered, ctx, [fn = std::move(fn)] { fn(); });
  return a;
}

void click_if_enabled(QPushButton* b) {
  if (b->isEnabled()) b->click();
}

}  // namespace

void MainWindow::build_menus() {
  QMenu* file = menuBar()->addMenu("&File");
  add(file, "&Open config…", "action_open", QKeySequence::Open, this, [this] {
    const QString f =
        QFileDialog::getOpenFileName(this, "Open model config", {}, "JSON (*.json);;All files (*)");
    if (!f.isEmpty()) open_config(f);
  });
  recent_menu_ = file->addMenu("Open &recent");
  recent_menu_->setObjectName("menu_recent");
  add(file, "&Save config as…", "action_save", QKeySequence::Save, this, [this] {
    const QString f =
        QFileDialog::getSaveFileName(this, "Save model config", "model.json", "JSON (*.json)");
    if (!f.isEmpty() && arch_->save_json(f)) add_recent(f);
  });
  file->addSeparator();
  add(file, "&Export charts…", "action_export", QKeySequence(Qt::CTRL | Qt::Key_E), this, [this] {
    QString error;
    const QString f = export_charts_interactive(this, charts_, "charts", &error);
    if (!f.isEmpty())
      statusBar()->showMessage("Charts saved to " + f, 5000);
    else if (!error.isEmpty())
      statusBar()->showMessage("Export failed: " + error, 8000);
  });
  file->addSeparator();
  add(file, "&Quit", "action_quit", QKeySequence(Qt::CTRL | Qt::Key_Q), this, [this] { close(); });

  QMenu* edit = menuBar()->addMenu("&Edit");
  // The composer owns Ctrl+Z / Ctrl+Shift+Z (scoped to it, so text fields keep
  // their own undo); the menu items act on the composer from anywhere.
  QAction* undo = arch_->undo_stack()->createUndoAction(this, "&Undo composer edit");
  undo->setObjectName("action_undo");
  QAction* redo = arch_->undo_stack()->createRedoAction(this, "&Redo composer edit");
  redo->setObjectName("action_redo");
  edit->addAction(undo);
  edit->addAction(redo);

  QMenu* run = menuBar()->addMenu("&Run");
  add(run, "&Start", "action_start", QKeySequence(Qt::Key_F5), this,
      [this] { click_if_enabled(train_->start_button()); });
  add(run, "&Pause / resume", "action_pause", QKeySequence(Qt::Key_F6), this, [this] {
    if (train_->pause_button()->isEnabled())
      train_->pause_button()->click();
    else
      click_if_enabled(train_->resume_button());
  });
  add(run, "S&tep once", "action_step", QKeySequence(Qt::Key_F10), this,
      [this] { click_if_enabled(train_->step_button()); });
  add(run, "St&op", "action_stop", QKeySequence(Qt::SHIFT | Qt::Key_F5), this,
      [this] { click_if_enabled(train_->stop_button()); });
  run->addSeparator();
  add(run, "&Generate sample", "action_generate", QKeySequence(Qt::CTRL | Qt::Key_G), this, [this] {
    tabs_->setCurrentWidget(samples_);
    click_if_enabled(samples_->generate_button());
  });

  QMenu* view = menuBar()->addMenu("&View");
  const QStringList tab_names = {"&Composer", "C&harts", "&Samples", "R&uns"};
  for (int i = 0; i < tab_names.size(); ++i)
    add(view, tab_names[i], QString("action_tab%1").arg(i + 1),
        QKeySequence(Qt::CTRL | Qt::Key(Qt::Key_1 + i)), this,
        [this, i] { tabs_->setCurrentIndex(i); });
  view->addSeparator();
  QAction* dock = run_dock_->toggleViewAction();
  dock->setText("Run &panel");
  dock->setObjectName("action_run_panel");
  dock->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_R));
  view->addAction(dock);
  QAction* dark = add(view, "&Dark theme", "action_dark",
                      QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_D), this, [] {});
  dark->setCheckable(true);
  connect(dark, &QAction::toggled, this, [this](bool on) { set_dark_theme(on); });
  add(view, "&Reset chart zoom", "action_reset_zoom", QKeySequence(Qt::CTRL | Qt::Key_0), this,
      [this] {
        for (PlotView* p : charts_->plots()) p->reset_zoom();
      });

  QMenu* help = menuBar()->addMenu("&Help");
  add(help, "&Keyboard shortcuts", "action_shortcuts", QKeySequence(Qt::Key_F1), this,
      [this] { show_shortcuts(); });
  add(help, "&About Blocklab", "action_about", {}, this, [this] {
    QMessageBox::about(
        this, "About Blocklab",
        "<b>Blocklab</b><br>A workbench for language-model architecture research: compose "
        "blocks, train them on a background engine, compare runs.<br><br>"
        "C++20, Eigen, SQLite; Qt " QT_VERSION_STR
        " Widgets + Qt Charts.<br>"
        "Headless: <code>blocklab-cli</code>.");
  });
  add(help, "About &Qt", "action_about_qt", {}, this, [] { QApplication::aboutQt(); });
  rebuild_recent_menu();
}

void MainWindow::show_shortcuts() {
  QString rows;
  for (QAction* a : findChildren<QAction*>()) {
    if (a->shortcut().isEmpty() || a->objectName().isEmpty()) continue;
    rows += QString("<tr><td><b>%1</b></td><td>%2</td></tr>")
                .arg(a->shortcut().toString(QKeySequence::NativeText).toHtmlEscaped(),
                     a->text().remove('&').toHtmlEscaped());
  }
  rows += "<tr><td><b>Ctrl+Z / Ctrl+Shift+Z</b></td><td>Undo / redo (in the composer)</td></tr>";
  rows +=
      "<tr><td><b>Drag / right-click / double-click</b></td><td>Zoom a chart in / out / "
      "reset</td></tr>";
  auto* box =
      new QMessageBox(QMessageBox::NoIcon, "Keyboard shortcuts",
                      "<table cellspacing=6>" + rows + "</table>", QMessageBox::Close, this);
  box->setObjectName("shortcuts_dialog");
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->open();  // not exec(): the 20 Hz drain keeps running
}

QAction* MainWindow::action(const QString& name) const {
  return findChild<QAction*>(name);
}

bool MainWindow::open_config(const QString& path) {
  if (session_.running()) {
    train_->set_status("Stop the current run before opening another configuration.");
    return false;
  }
  if (!arch_->load_json(path)) return false;  // the composer says why
  add_recent(path);
  tabs_->setCurrentWidget(arch_);
  return true;
}

void MainWindow::add_recent(const QString& path) {
  const QString abs = QFileInfo(path).absoluteFilePath();
  recent_.removeAll(abs);
  recent_.prepend(abs);
  while (recent_.size() > kMaxRecent) recent_.removeLast();
  rebuild_recent_menu();
}

void MainWindow::rebuild_recent_menu() {
  recent_menu_->clear();
  for (int i = 0; i < recent_.size(); ++i) {
    const QString path = recent_[i];
    QAction* a =
        recent_menu_->addAction(QString("&%1 %2").arg(i + 1).arg(QFileInfo(path).fileName()), this,
                                [this, path] { open_config(path); });
    a->setToolTip(path);
    a->setEnabled(QFileInfo(path).isFile());
  }
  recent_menu_->setEnabled(!recent_.isEmpty());
}

void MainWindow::set_dark_theme(bool on) {
  dark_ = on;
  apply_theme(on);
  charts_->set_dark(on);
  browser_->charts()->set_dark(on);
  if (QAction* a = action("action_dark"); a && a->isChecked() != on) {
    const QSignalBlocker b(a);
    a->setChecked(on);
  }
}

void MainWindow::save_settings() const {
  QSettings s = settings_store();
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("window/tab", tabs_->currentIndex());
  s.setValue("view/dark", dark_);
  s.setValue("charts/x_axis", int(charts_->x_axis()));
  s.setValue("charts/smoothing", charts_->smoothing_slider()->value());
  s.setValue("charts/log_y", charts_->log_box()->isChecked());
  s.setValue("charts/metrics", charts_->metric_charts());
  s.setValue("compare/metrics", browser_->charts()->metric_charts());
  QStringList columns;
  for (const std::string& c : browser_->config_columns()) columns << QString::fromStdString(c);
  s.setValue("runs/config_columns", columns);
  const GroupSpec& g = browser_->grouping();
  s.setValue("runs/group_by", int(g.by));
  s.setValue("runs/group_field", QString::fromStdString(g.field));
  s.setValue("runs/group_pattern", QString::fromStdString(g.pattern));
  s.setValue("compare/band", int(browser_->charts()->band()));
  s.setValue("train/tokenizer", QString::fromStdString(train_->tokenizer_spec()));
  s.setValue("recent_configs", recent_);
  s.setValue("session/preset", presets_->currentText());
  TrainConfig t = base_.train;
  train_->apply_to(t);
  s.setValue("train/preset", presets_->currentText());
  s.setValue("train/config", QString::fromStdString(train_config_to_json(t).dump()));
  s.setValue("train/data", train_->data_path());
}

void MainWindow::restore_settings() {
  remember_ = true;
  QSettings s = settings_store();
  recent_ = s.value("recent_configs").toStringList();
  rebuild_recent_menu();
  if (s.contains("window/geometry")) restoreGeometry(s.value("window/geometry").toByteArray());
  if (s.contains("window/state")) restoreState(s.value("window/state").toByteArray());
  tabs_->setCurrentIndex(s.value("window/tab", 0).toInt());
  set_dark_theme(s.value("view/dark", false).toBool());
  charts_->set_x_axis(ChartsPanel::XAxis(
      std::clamp(s.value("charts/x_axis", 0).toInt(), 0, int(ChartsPanel::XAxis::kFlops))));
  if (s.contains("charts/smoothing"))
    charts_->smoothing_slider()->setValue(s.value("charts/smoothing").toInt());
  charts_->set_log_y(s.value("charts/log_y", false).toBool());
  charts_->set_metric_charts(s.value("charts/metrics").toStringList());
  browser_->charts()->set_metric_charts(s.value("compare/metrics").toStringList());
  std::vector<std::string> columns;
  for (const QString& c : s.value("runs/config_columns").toStringList())
    columns.push_back(c.toStdString());
  browser_->set_config_columns(columns);
  const int by = s.value("runs/group_by", 0).toInt();
  if (by > 0 && by <= int(GroupSpec::By::kName))
    browser_->set_grouping({.by = GroupSpec::By(by),
                            .field = s.value("runs/group_field").toString().toStdString(),
                            .pattern = s.value("runs/group_pattern").toString().toStdString()});
  browser_->charts()->set_band(s.value("compare/band", 0).toInt() == 1 ? ChartsPanel::Band::kMinMax
                                                                       : ChartsPanel::Band::kStd);
  if (s.contains("train/tokenizer"))
    train_->set_tokenizer_spec(s.value("train/tokenizer").toString().toStdString());
  // Train settings belong to the preset they were made for: another preset
  // (from --preset) keeps its own.
  if (s.value("train/preset").toString() == presets_->currentText() && s.contains("train/config")) {
    try {
      TrainConfig t = base_.train;
      from_json(nlohmann::json::parse(s.value("train/config").toString().toStdString()), t);
      train_->set_config(t);
    } catch (const std::exception&) {
      // A settings file from another version: keep the preset's settings.
    }
    const QString data = s.value("train/data").toString();
    if (!data.isEmpty() && QFileInfo(data).isFile()) train_->set_data_path(data);
    refresh();
  }
}

QString MainWindow::last_preset() {
  return settings_store().value("session/preset").toString();
}

}  // namespace bl
