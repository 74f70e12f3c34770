// The workbench window. Left dock: preset and the training form with the run
// controls. Tabs: Composer (architecture), Charts (live curves), Samples
// (generated text) and Runs (the experiment browser). Thin: it edits configs,
// starts/stops the engine session and draws what the session reports, drained
// on a 20 Hz timer (never one event per training step).
#pragma once

#include <QMainWindow>
#include <QStringList>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/presets.h"
#include "plot/charts_panel.h"
#include "store/experiment_store.h"
#include "training/training_session.h"

class QAction;
class QComboBox;
class QDockWidget;
class QMenu;
class QLabel;
class QTabWidget;
class QTimer;

namespace bl {

class ArchPanel;
class ChartsPanel;
class RunBrowser;
class HeatmapPanel;
class SamplesPanel;
class TrainingPanel;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  /// Opens with `preset_name` and the bundled corpus; runs are recorded in
  /// `db_path` (empty: default_db_path(), i.e. $BLOCKLAB_DB or the XDG data dir).
  explicit MainWindow(const std::string& preset_name = "gpt-tiny", const std::string& db_path = "",
                      QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Loads a preset into the forms (not while training).
  void load_preset_by_name(const std::string& name);
  /// Loads `p` into the forms as preset `name` (not while training).
  void load_preset(const Preset& p, const std::string& name);
  /// Loads a stored run's configuration and dataset into the forms (a fork).
  bool load_run_config(const RunRecord& run);
  /// Continues a stored run from its newest checkpoint (as train --resume);
  /// false (with the reason in the status line) when it cannot start.
  bool resume_run(const RunRecord& run);
  /// The preset the forms describe now (with fine-tuning on, the base
  /// checkpoint's model replaces the composer's).
  Preset current_preset() const;
  /// Re-reads the stored runs with a checkpoint into the fine-tune base list.
  void refresh_finetune_bases();
  /// Validation errors of the forms (empty = ready to train).
  const std::vector<std::string>& errors() const { return errors_; }

  ArchPanel* arch_panel() const { return arch_; }
  TrainingPanel* training_panel() const { return train_; }
  ChartsPanel* charts() const { return charts_; }
  SamplesPanel* samples_panel() const { return samples_; }
  RunBrowser* browser() const { return browser_; }
  HeatmapPanel* heatmap_panel() const { return heatmaps_; }
  QTabWidget* tabs() const { return tabs_; }
  QComboBox* preset_box() const { return presets_; }
  TrainingSession& session() { return session_; }
  /// Id of the run started last from this window (0 before the first).
  int64_t live_run_id() const { return live_run_id_; }
  /// Steps received from the engine in the current run.
  int64_t steps_received() const { return steps_received_; }
  /// The last summary received (the run has ended).
  const std::optional<TrainSummary>& last_summary() const { return summary_; }

  // --- remembered between launches (QSettings, INI format, user scope) ---
  /// Reads the window layout, tab, theme, chart choices, recent configs and,
  /// when the loaded preset is the one saved, its train settings and dataset;
  /// from then on closing the window saves them. Not called by the constructor,
  /// so tests and the screenshot tool start from defaults.
  void restore_settings();
  void save_settings() const;
  /// The preset open when the window last closed ("" if none): the default
  /// for the next launch without --preset.
  static QString last_preset();
  /// Dark or light theme for the whole application and the charts.
  void set_dark_theme(bool on);
  bool dark_theme() const { return dark_; }
  /// Loads a model config or preset JSON into the composer and lists it in
  /// File > Recent configs.
  bool open_config(const QString& path);
  QStringList recent_configs() const { return recent_; }
  /// A menu action by object name ("action_quit", "action_dark", ...), or null.
  QAction* action(const QString& name) const;

 protected:
  void closeEvent(QCloseEvent* e) override;

 private:
  void refresh();  // re-validate, redraw the analysis, update buttons
  void start();
  void launch(const RunSpec& spec, const QString& status);  // start() and resume_run()
  void poll();                                              // drains the session (timer)
  void update_state();
  void push_sampling();
  void build_menus();  // main_window_menus.cpp
  void add_recent(const QString& path);
  void rebuild_recent_menu();
  void show_shortcuts();

  Preset base_;  // the loaded preset; the forms override some of its fields
  std::optional<int64_t> parent_run_id_;
  std::vector<std::string> errors_;
  QComboBox* presets_;
  QLabel* preset_info_;
  ArchPanel* arch_;
  TrainingPanel* train_;
  ChartsPanel* charts_;
  SamplesPanel* samples_;
  RunBrowser* browser_;
  HeatmapPanel* heatmaps_;
  QTabWidget* tabs_;
  QTimer* poll_timer_;
  TrainingSession session_;
  int64_t live_run_id_ = 0;
  int64_t steps_received_ = 0;
  int64_t max_steps_ = 0;
  double ema_step_ms_ = 0;                  // for the ETA
  bool stopping_ = false;                   // Stop pressed; the run is finishing
  QString live_name_;                       // the chart legend of the run being trained
  std::optional<RunCurves> resume_curves_;  // a resumed run's history, drawn once it starts
  int shown_state_ = -1;                    // last state applied by update_state()
  std::optional<TrainSummary> summary_;
  bool dark_ = false;
  bool remember_ = false;  // restore_settings() was called: save on close
  QStringList recent_;     // most recent first
  QMenu* recent_menu_ = nullptr;
  QDockWidget* run_dock_ = nullptr;
};

}  // namespace bl
