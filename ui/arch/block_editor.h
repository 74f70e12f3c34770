// Editor for one block (the shared block or the selected layers): a combo box
// per component slot, filled from the engine registries, and below each only
// the fields that the chosen component reads (rope_theta for rope,
// n_kv_heads for gqa, window_size for sliding variants, ...).
#pragma once

#include <QWidget>
#include <map>
#include <set>
#include <string>

#include "arch/arch_edit.h"

class QComboBox;
class QLabel;
class QPushButton;

namespace bl {

class BlockEditor : public QWidget {
  Q_OBJECT

 public:
  explicit BlockEditor(QWidget* parent = nullptr);

  /// Shows `b` without emitting signals. `title` names the scope ("Shared
  /// block", "Layers 2–3"); `overrides` are the fields differing from shared.
  void set_block(const BlockConfig& b, const QString& title, bool shared,
                 const std::vector<std::string>& overrides);
  /// Fields (JSON keys) named by validation errors get a red frame.
  void mark_invalid(const std::map<std::string, QString>& errors);
  void set_editable(bool on);

  QComboBox* combo(Slot s) const;
  /// The editor widget of a field (QSpinBox, QDoubleSpinBox or QCheckBox), or null.
  QWidget* field(const std::string& key) const;
  /// Whether the field's row is shown for the current components.
  bool field_shown(const std::string& key) const;
  QPushButton* reset_button() const { return reset_; }
  /// Width that shows every field row of every component unclipped (the
  /// scroll area around the editor is kept at least this wide).
  int needed_width() const;

 signals:
  void component_edited(bl::Slot slot, const QString& name);
  void field_edited(const QString& key, double value);
  /// Drop the selected layers' overrides (make them the shared block again).
  void reset_requested();

 private:
  void update_visibility();
  void style_combo(Slot s);  // error frame, else override colour

  BlockConfig block_;
  QLabel* title_;
  QLabel* note_;
  std::map<Slot, QComboBox*> combos_;
  std::map<std::string, QWidget*> fields_;
  std::map<std::string, QWidget*> field_rows_;  // label + editor, hidden when unused
  std::map<std::string, QLabel*> field_labels_;
  std::set<std::string> shown_;
  std::map<Slot, QString> combo_errors_;
  std::set<Slot> combo_overrides_;
  QPushButton* reset_;
  bool editable_ = true, has_overrides_ = false;
};

}  // namespace bl
