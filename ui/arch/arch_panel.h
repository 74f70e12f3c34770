// The architecture composer: model-level form, the layer stack (select,
// insert, duplicate, delete, drag to reorder), a block editor for the shared
// block or the selected layers, live pre-flight analysis (parameters,
// FLOPs/token, activation and weight memory per layer and in total), the
// engine's validation errors shown next to the fields they name, presets,
// JSON load/save and undo/redo over whole-ModelConfig snapshots.
#pragma once

#include <QWidget>
#include <map>
#include <string>
#include <vector>

#include "core/arch_analysis.h"
#include "core/config.h"

class QAction;
class QCheckBox;
class QLabel;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QToolButton;
class QUndoStack;

namespace bl {

class BlockEditor;
class LayerStackView;
class ModelForm;

class ArchPanel : public QWidget {
  Q_OBJECT

 public:
  explicit ArchPanel(QWidget* parent = nullptr);

  /// Shows `m` (without emitting changed()); clears the undo history and selection.
  void set_model(const ModelConfig& m, std::string preset_name = "");
  /// The preset the shown model came from (the window's preset, a forked run's,
  /// or the Presets menu; kept through edits and undone with them); "" after
  /// opening a JSON file.
  const std::string& preset_name() const { return preset_name_; }
  /// Writes the composed model into `m` (the whole ModelConfig).
  void apply_to(ModelConfig& m) const;
  /// Redraws the analysis of `m` at context seq_len (batch_size sequences per
  /// step; 0 keeps the last) and lists `errors` (e.g. the whole preset's) inline.
  void show_analysis(const ModelConfig& m, int64_t seq_len, const std::vector<std::string>& errors,
                     int64_t batch_size = 0);
  /// Disables editing while a run is in progress.
  void set_editable(bool on);

  const ModelConfig& model() const { return model_; }
  /// The engine's validation errors of model() (field paths like "block.d_model").
  std::vector<std::string> errors() const;
  bool valid() const { return errors().empty(); }
  /// The analysis on display (empty layers while the model is invalid).
  const ArchAnalysis& analysis() const { return analysis_; }

  // --- edits: each is one undo step and emits changed() ---
  void insert_layer();         // a shared block after the selection (or at the end)
  void duplicate_selection();  // copies right after the selection
  void delete_selection();
  void move_selection(int delta);               // -1 up, +1 down
  void reset_selection();                       // selected layers become the shared block again
  bool load_preset_model(const QString& name);  // keeps vocab_size
  bool load_json(const QString& path);          // a ModelConfig or a preset file; keeps vocab_size
  bool save_json(const QString& path);
  void select_layers(int64_t first, int64_t last);  // first < 0: the shared block

  QUndoStack* undo_stack() const { return undo_; }
  ModelForm* model_form() const { return form_; }
  BlockEditor* block_editor() const { return editor_; }
  LayerStackView* stack() const { return stack_; }
  QSpinBox* d_model_box() const;
  QSpinBox* n_heads_box() const;
  QSpinBox* n_layers_box() const;
  QTableWidget* table() const { return table_; }
  QLabel* error_label() const { return errors_; }
  QLabel* totals_label() const { return totals_; }
  QLabel* status_label() const { return status_; }
  QCheckBox* collapse_box() const { return collapse_; }

 signals:
  /// The composed model was edited by the user (or undo / redo).
  void changed();

 private:
  struct Snapshot {
    ModelConfig model;
    std::string preset;             // preset_name()
    int64_t first = -1, last = -1;  // selection
  };
  void commit(const ModelConfig& next, const QString& what, int64_t first, int64_t last,
              const std::string* preset = nullptr);           // nullptr keeps preset_name()
  void commit(const ModelConfig& next, const QString& what);  // keeps the selection
  void restore(const Snapshot& s);                            // undo / redo
  void refresh_views();
  void refresh_editor();
  void update_buttons();
  void show_problems(const ModelConfig& m, const std::vector<std::string>& errors);
  void draw_analysis(const ModelConfig& m);
  void block_field_edited(const QString& key, double v);
  void model_field_edited(const QString& key, double v);
  void status(const QString& text, bool error = false);

  ModelConfig model_;
  std::string preset_name_;
  int64_t seq_len_ = 0;  // 0 = the model's max_seq_len
  int64_t batch_ = 1;
  ArchAnalysis analysis_;
  ModelConfig analysed_;  // cache key of analysis_
  int64_t analysed_seq_ = -1, analysed_batch_ = -1;
  bool editable_ = true;

  QUndoStack* undo_;
  ModelForm* form_;
  LayerStackView* stack_;
  BlockEditor* editor_;
  QTableWidget* table_;
  QLabel* totals_;
  QLabel* errors_;
  QLabel* status_;
  QCheckBox* collapse_;
  QToolButton* presets_;
  QPushButton *insert_, *duplicate_, *delete_, *up_, *down_;
  std::vector<QWidget*> edit_widgets_;  // disabled while training
  std::vector<QAction*> undo_actions_;  // undo, redo
  std::map<std::string, QString> form_errors_;
  std::map<int64_t, std::map<std::string, QString>> layer_errors_;
};

}  // namespace bl
