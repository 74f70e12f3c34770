#include "arch/block_editor.h"

#include <QComboBox>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSignalBlocker>
#include <QVBoxLayout>
#include <algorithm>

#include "arch/field_widget.h"

namespace bl {

namespace {
// Fields the composer keeps model-wide (they sit in the model form only).
bool model_wide(const std::string& key) {
  return key == "d_model" || key == "max_seq_len" || key == "bias" || key == "pre_norm" ||
         key == "dropout";
}

const char* slot_title(Slot s) {
  switch (s) {
    case Slot::kAttention:
      return "Attention";
    case Slot::kFfn:
      return "Feed-forward";
    case Slot::kNorm:
      return "Norm";
    case Slot::kPosition:
      break;
  }
  return "Position";
}

const char* slot_colour(Slot s) {  // matches the tiles of LayerStackView
  switch (s) {
    case Slot::kAttention:
      return "#1e88e5";
    case Slot::kFfn:
      return "#43a047";
    case Slot::kNorm:
      return "#78909c";
    case Slot::kPosition:
      break;
  }
  return "#8e24aa";
}
}  // namespace

BlockEditor::BlockEditor(QWidget* parent) : QWidget(parent) {
  setObjectName("block_editor");
  title_ = new QLabel;
  title_->setObjectName("block_title");
  QFont f = title_->font();
  f.setBold(true);
  f.setPointSizeF(f.pointSizeF() * 1.1);
  title_->setFont(f);
  note_ = new QLabel;
  note_->setWordWrap(true);
  note_->setStyleSheet("color: #616161;");

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(title_);
  layout->addWidget(note_);
  for (Slot s : {Slot::kAttention, Slot::kFfn, Slot::kNorm, Slot::kPosition}) {
    auto* box = new QGroupBox(slot_title(s));
    box->setStyleSheet(QString("QGroupBox { border: 1px solid #d0d0d0; border-left: 4px solid %1;"
                               " border-radius: 4px; margin-top: 1.1em; padding: 4px; }"
                               "QGroupBox::title { subcontrol-origin: margin; left: 8px;"
                               " color: %1; font-weight: bold; }")
                           .arg(slot_colour(s)));
    // One row widget per field: hidden rows take no space in a box layout.
    auto* rows = new QVBoxLayout(box);
    rows->setSpacing(4);
    auto add_row = [rows](const QString& text, QWidget* w) {
      auto* row = new QWidget;
      auto* h = new QHBoxLayout(row);
      h->setContentsMargins(0, 0, 0, 0);
      auto* label = new QLabel(text);
      label->setMinimumWidth(78);
      h->addWidget(label);
      h->addWidget(w, 1);
      rows->addWidget(row);
      return std::make_pair(row, label);
    };
    auto* combo = new QComboBox;
    combo->setObjectName(QString(slot_key(s)) + "_combo");
    for (const std::string& n : component_names(s)) {
      combo->addItem(QString::fromStdString(n));
      combo->setItemData(combo->count() - 1, QString::fromStdString(component_summary(s, n)),
                         Qt::ToolTipRole);
    }
    connect(combo, &QComboBox::activated, this,
            [this, s, combo](int i) { emit component_edited(s, combo->itemText(i)); });
    combos_[s] = combo;
    add_row(slot_key(s), combo);
    for (const BlockField& bf : block_fields()) {
      if (bf.slot != s || model_wide(bf.key)) continue;
      const QString key = QString::fromStdString(bf.key);
      QWidget* w = make_field_widget(bf, [this, key](double v) { emit field_edited(key, v); });
      fields_[bf.key] = w;
      auto [row, label] = add_row(QString::fromStdString(bf.label), w);
      label->setToolTip(key);
      field_rows_[bf.key] = row;
      field_labels_[bf.key] = label;
    }
    layout->addWidget(box);
  }
  reset_ = new QPushButton("Reset to shared block");
  reset_->setObjectName("reset_layers");
  reset_->setToolTip("Drop the selected layers' overrides");
  connect(reset_, &QPushButton::clicked, this, &BlockEditor::reset_requested);
  layout->addWidget(reset_);
  layout->addStretch(1);
  set_block(BlockConfig{}, "Shared block", true, {});
}

int BlockEditor::needed_width() const {
  // Hidden rows still report their hint, so this covers components not shown
  // yet (a layer switched to mamba2 must not push the editor wider).
  int rows = 0;
  for (const auto& [key, row] : field_rows_) rows = std::max(rows, row->minimumSizeHint().width());
  for (const auto& [slot, combo] : combos_)
    rows = std::max(rows, combo->parentWidget()->minimumSizeHint().width());
  // Group box: its layout's margins, plus the style sheet's 4 px accent
  // border, 1 px border and 4 px padding each side.
  const QMargins m =
      combos_.begin()->second->parentWidget()->parentWidget()->layout()->contentsMargins();
  const int box = m.left() + m.right() + 4 + 1 + 2 * 4 + 1 + 4;
  return std::max(rows + box, title_->minimumSizeHint().width());
}

void BlockEditor::set_block(const BlockConfig& b, const QString& title, bool shared,
                            const std::vector<std::string>& overrides) {
  block_ = b;
  title_->setText(title);
  note_->setText(shared ? "Edits apply to every layer that does not override the field."
                 : overrides.empty() ? "Same as the shared block; edits here override it."
                                     : "Overrides the shared block (orange fields).");
  for (auto& [s, combo] : combos_) {
    const QSignalBlocker blk(combo);
    const QString name = QString::fromStdString(component(b, s));
    int i = combo->findText(name);
    if (i < 0) {  // a name the registry does not know (a loaded config): show it, flagged
      combo->addItem(name);
      i = combo->count() - 1;
    }
    combo->setCurrentIndex(i);
  }
  for (const BlockField& f : block_fields()) {
    auto it = fields_.find(f.key);
    if (it == fields_.end()) continue;
    set_field_value(it->second, f, f.get(b));
    const bool over = std::find(overrides.begin(), overrides.end(), f.key) != overrides.end();
    field_labels_[f.key]->setStyleSheet(over ? "color: #e65100; font-weight: bold;" : "");
  }
  combo_errors_.clear();
  combo_overrides_.clear();
  for (auto& [s, combo] : combos_) {
    if (std::find(overrides.begin(), overrides.end(), slot_key(s)) != overrides.end())
      combo_overrides_.insert(s);
    style_combo(s);
  }
  has_overrides_ = !overrides.empty();
  reset_->setVisible(!shared);
  reset_->setEnabled(editable_ && has_overrides_);
  update_visibility();
}

void BlockEditor::update_visibility() {
  shown_.clear();
  for (const BlockField& f : block_fields()) {
    auto it = fields_.find(f.key);
    if (it == fields_.end()) continue;
    const bool used = f.used(block_);
    field_rows_[f.key]->setVisible(used);
    if (used) shown_.insert(f.key);
  }
}

void BlockEditor::mark_invalid(const std::map<std::string, QString>& errors) {
  for (auto& [key, w] : fields_) {
    auto it = errors.find(key);
    mark_field(w, it == errors.end() ? QString() : it->second);
  }
  for (auto& [s, combo] : combos_) {
    auto it = errors.find(slot_key(s));
    combo_errors_[s] = it == errors.end() ? QString() : it->second;
    style_combo(s);
  }
}

void BlockEditor::style_combo(Slot s) {
  QComboBox* c = combos_.at(s);
  const QString error = combo_errors_[s];
  mark_field(c, error);
  c->setToolTip(error.isEmpty() ? QString::fromStdString(component_summary(s, component(block_, s)))
                                : error);
  if (combo_overrides_.count(s))
    c->setStyleSheet("QComboBox { color: #e65100; font-weight: bold; }");
  else
    c->setStyleSheet("");
}

void BlockEditor::set_editable(bool on) {
  editable_ = on;
  for (auto& [s, c] : combos_) c->setEnabled(on);
  for (auto& [k, w] : fields_) w->setEnabled(on);
  reset_->setEnabled(on && has_overrides_);
}

QComboBox* BlockEditor::combo(Slot s) const {
  return combos_.at(s);
}

QWidget* BlockEditor::field(const std::string& key) const {
  auto it = fields_.find(key);
  return it == fields_.end() ? nullptr : it->second;
}

bool BlockEditor::field_shown(const std::string& key) const {
  return shown_.count(key) > 0;
}

}  // namespace bl
