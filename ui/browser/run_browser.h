// The run browser: every run in the experiment store as a sortable, filterable
// table (name, status, preset, lineage: base run and adapter, params, best
// eval loss, tokens/s, date, tags; double-click a base to select that run);
// edit name/tags/notes, delete; select several runs to overlay their curves
// and see a config diff of only the differing fields; export chart PNG and
// metrics CSV; "Open in composer" forks a run's configuration. Runs of a
// sweep show it in the Sweep column and can be filtered to one sweep;
// "Sweep…" opens the sweep dialog (ui/sweep/sweep_dialog.h). "Group by"
// (config except seed, a config field, tags, name) lists each group of the
// visible runs with n and mean ± std of best eval and final loss, and draws
// the compared runs as one mean curve with a band per group.
//
// Reads go through a read-only connection polled on a timer (WAL readers never
// block the training writer), so runs written by another process (the CLI)
// appear and update live. Edits open a short-lived read-write connection.
#pragma once

#include <QString>
#include <QWidget>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "browser/run_groups.h"
#include "store/experiment_store.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSortFilterProxyModel;
class QStandardItemModel;
class QTableView;
class QTableWidget;
class QTabWidget;
class QTimer;

namespace bl {

class ChartsPanel;

/// "LoRA r8 q,v nf4" from a fine-tune run's summary "lora" block ("" otherwise).
QString adapter_text(const RunRecord& r);

class RunBrowser : public QWidget {
  Q_OBJECT

 public:
  enum Column {
    kId,
    kName,
    kStatus,
    kPreset,
    kBase,     // parent run ("#3"): the fine-tune's base or the forked run
    kAdapter,  // "LoRA r8 q,v nf4" for fine-tunes
    kParams,
    kBestEval,
    kTokensPerSec,
    kDate,
    kTags,
    kSweep,  // "#2 / 5": sweep 2, trial 5 (sorting by it groups a sweep's runs in trial order)
    kColumns
  };

  /// Columns of the groups table.
  enum GroupColumn {
    kGroupLabel,
    kGroupRuns,
    kGroupBestEval,
    kGroupBestRange,
    kGroupFinalLoss,
    kGroupIds,
    kGroupColumns
  };

  explicit RunBrowser(const std::string& db_path, QWidget* parent = nullptr);
  ~RunBrowser() override;

  /// Re-reads the store now (the timer does this every poll interval).
  void refresh();
  const std::string& db_path() const { return db_path_; }

  /// Visible (filtered) rows and their run ids in display order.
  int visible_rows() const;
  std::vector<int64_t> visible_ids() const;
  std::vector<int64_t> selected_ids() const;
  void select_runs(const std::vector<int64_t>& ids);
  /// The last-read record of a run.
  std::optional<RunRecord> run(int64_t id) const;
  /// Text shown in `column` for run `id`.
  QString cell(int64_t id, Column column) const;
  /// Configuration fields shown as extra columns after the fixed ones, by
  /// dotted path as the config diff names them ("train.learning_rate",
  /// "model.block.d_model"); numbers sort numerically.
  void set_config_columns(std::vector<std::string> paths);
  const std::vector<std::string>& config_columns() const { return config_columns_; }
  /// Text of config column `path` for run `id` ("" if the column is not shown).
  QString config_cell(int64_t id, const std::string& path) const;
  /// Every dotted config path of the runs read, sorted (the Columns menu).
  std::vector<std::string> config_paths() const;

  /// Groups runs (the "Group by" box; kNone ungroups): the groups table shows
  /// the visible runs' groups, the compare charts each selected group's mean
  /// and band. An invalid name pattern is reported and groups nothing.
  void set_grouping(const GroupSpec& spec);
  const GroupSpec& grouping() const { return grouping_; }
  /// The visible runs' groups, in the groups table's order.
  const std::vector<RunGroup>& visible_groups() const { return visible_groups_; }
  QComboBox* group_box() const { return group_box_; }
  QLineEdit* group_pattern_edit() const { return group_pattern_; }
  QTableWidget* groups_table() const { return groups_table_; }

  // Edits (read-write connection); errors go to the message label and return false.
  bool set_tags(int64_t id, const QStringList& tags);
  bool set_notes(int64_t id, const QString& notes);
  bool rename(int64_t id, const QString& name);
  bool delete_runs(const std::vector<int64_t>& ids);
  /// The compared charts alone (no controls), PNG or SVG by suffix, 1600×1000.
  bool export_png(const QString& path);
  bool export_csv(const QString& path);

  QTableView* table() const { return table_; }
  QLineEdit* search_box() const { return search_; }
  QComboBox* status_box() const { return status_; }
  /// "all runs", "no sweep", then "sweep N 'name'" for each sweep seen.
  QComboBox* sweep_box() const { return sweep_; }
  QPushButton* sweep_button() const { return sweep_button_; }
  QPushButton* columns_button() const { return columns_button_; }
  QTableWidget* diff_table() const { return diff_; }
  ChartsPanel* charts() const { return charts_; }
  QTabWidget* compare_tabs() const { return tabs_; }
  QLabel* message_label() const { return message_; }
  QPushButton* open_button() const { return open_; }
  QPushButton* resume_button() const { return resume_; }

 signals:
  /// "Open in composer": load this run's configuration into the forms.
  void open_in_composer(const bl::RunRecord& run);
  /// "Resume": continue this run from its newest checkpoint (as train --resume).
  void resume_requested(const bl::RunRecord& run);

 private:
  bool open_reader();
  void update_row(const RunRecord& r);
  void fill_config_cells(int row, const RunRecord& r);
  void selection_changed();
  void update_compare();
  void update_details();
  void update_diff();
  void poll_curves();
  void update_groups();     // the groups table and box, after runs or filters changed
  void color_group_rows();  // group labels in their chart colours
  std::vector<RunGroup> groups_of(const std::vector<int64_t>& ids);  // {} on a bad pattern
  bool write(const std::function<void(ExperimentStore&)>& fn);
  void set_message(const QString& text, bool error);
  int64_t current_id() const;

  std::string db_path_;
  std::unique_ptr<ExperimentStore> reader_;
  std::map<int64_t, RunRecord> runs_;
  std::map<int64_t, int64_t> loaded_step_;  // run id -> last step drawn in charts_
  QStandardItemModel* model_;
  QSortFilterProxyModel* proxy_;
  QTableView* table_;
  QLineEdit* search_;
  QComboBox* status_;
  QComboBox* sweep_;
  QPushButton* sweep_button_;
  QPushButton* columns_button_;
  std::vector<std::string> config_columns_;
  GroupSpec grouping_;
  std::vector<RunGroup> visible_groups_;
  QComboBox* group_box_;
  QLineEdit* group_pattern_;
  QTableWidget* groups_table_;
  bool groups_dirty_ = true;  // runs, tags, names or the filter changed since update_groups
  bool fields_dirty_ = true;  // runs added or removed: the Group by box's fields to redo
  QLabel* count_;
  QLineEdit* name_edit_;
  QLineEdit* tags_edit_;
  QPlainTextEdit* notes_edit_;
  QPushButton *save_, *delete_, *open_, *resume_, *png_, *csv_;
  QLabel* details_title_;
  QLabel* message_;
  QTabWidget* tabs_;
  ChartsPanel* charts_;
  QTableWidget* diff_;
  QTimer* poll_;
};

}  // namespace bl
