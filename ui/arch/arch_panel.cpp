#include "arch/arch_panel.h"

#include <QAction>
#include <QCheckBox>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMenu>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollArea>
#include <QSpinBox>
#include <QSplitter>
#include <QStyle>
#include <QTableWidget>
#include <QToolButton>
#include <QUndoCommand>
#include <QUndoStack>
#include <QVBoxLayout>
#include <algorithm>
#include <exception>
#include <functional>
#include <set>

#include "arch/arch_edit.h"
#include "arch/block_editor.h"
#include "arch/error_groups.h"
#include "arch/layer_stack_view.h"
#include "arch/model_form.h"
#include "core/presets.h"

namespace bl {

namespace {

QString human(double v, const char* unit = "") {
  QString s;
  if (v >= 1e12)
    s = QString::number(v / 1e12, 'f', 2) + " T";
  else if (v >= 1e9)
    s = QString::number(v / 1e9, 'f', 2) + " G";
  else if (v >= 1e6)
    s = QString::number(v / 1e6, 'f', 2) + " M";
  else if (v >= 1e3)
    s = QString::number(v / 1e3, 'f', 1) + " k";
  else
    s = QString::number(v, 'f', 0) + (*unit ? " " : "");
  return s + unit;
}

QString bytes(double b) {
  if (b >= double(1ll << 30)) return QString::number(b / double(1ll << 30), 'f', 2) + " GiB";
  if (b >= double(1 << 20)) return QString::number(b / double(1 << 20), 'f', 1) + " MiB";
  if (b >= 1024) return QString::number(b / 1024, 'f', 1) + " KiB";
  return QString::number(b, 'f', 0) + " B";
}

// One undo step: a whole-ModelConfig snapshot before and after an edit.
// Edits of the same thing in quick succession (arrowing through a combo box,
// spinning a value) merge into one step, as text editors merge typing.
template <class Snap>
class SnapshotCommand : public QUndoCommand {
 public:
  SnapshotCommand(std::function<void(const Snap&)> apply, Snap before, Snap after,
                  const QString& text)
      : apply_(std::move(apply)), before_(std::move(before)), after_(std::move(after)) {
    setText(text);
    subject_ = text.section(QString::fromUtf8(" → "), 0, 0);
    clock_.start();
  }
  void undo() override { apply_(before_); }
  void redo() override { apply_(after_); }
  int id() const override { return 1; }
  bool mergeWith(const QUndoCommand* other) override {
    auto* o = static_cast<const SnapshotCommand*>(other);
    if (o->subject_ != subject_ || clock_.elapsed() > kMergeWindowMs) return false;
    after_ = o->after_;
    setText(o->text());
    clock_.restart();
    return true;
  }

 private:
  static constexpr qint64 kMergeWindowMs = 1500;
  std::function<void(const Snap&)> apply_;
  Snap before_, after_;
  QString subject_;  // "ffn" of "ffn → gated", or the whole text
  QElapsedTimer clock_;
};

void add_line(std::map<std::string, QString>& m, const std::string& key, const QString& line) {
  QString& s = m[key];
  s += (s.isEmpty() ? "" : "\n") + line;
}

QPushButton* button(const char* text, const char* name, const char* tip) {
  auto* b = new QPushButton(text);
  b->setObjectName(name);
  b->setToolTip(tip);
  return b;
}

}  // namespace

ArchPanel::ArchPanel(QWidget* parent) : QWidget(parent) {
  setObjectName("arch_panel");
  undo_ = new QUndoStack(this);

  // Toolbar: presets, files, history, collapse toggle, status.
  presets_ = new QToolButton;
  presets_->setObjectName("presets_button");
  presets_->setText("Presets");
  presets_->setPopupMode(QToolButton::InstantPopup);
  auto* preset_menu = new QMenu(presets_);
  for (const std::string& n : preset_names()) {
    QAction* a = preset_menu->addAction(QString::fromStdString(n));
    try {
      a->setToolTip(QString::fromStdString(load_preset(n).description));
    } catch (const std::exception&) {
    }
    connect(a, &QAction::triggered, this,
            [this, n] { load_preset_model(QString::fromStdString(n)); });
  }
  preset_menu->setToolTipsVisible(true);
  presets_->setMenu(preset_menu);
  auto* open = new QToolButton;
  open->setObjectName("open_json");
  open->setText("Open…");
  open->setToolTip("Load a model config (or a preset file) from JSON");
  connect(open, &QToolButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, "Open model config", QString(),
                                                      "JSON (*.json);;All files (*)");
    if (!path.isEmpty()) load_json(path);
  });
  auto* save = new QToolButton;
  save->setObjectName("save_json");
  save->setText("Save…");
  save->setToolTip("Save the model config as JSON");
  connect(save, &QToolButton::clicked, this, [this] {
    const QString path =
        QFileDialog::getSaveFileName(this, "Save model config", "model.json", "JSON (*.json)");
    if (!path.isEmpty()) save_json(path);
  });
  // Fixed-width buttons; the command they would undo shows in the tooltip.
  auto* undo = new QAction("Undo", this);
  undo->setShortcut(QKeySequence::Undo);
  undo->setEnabled(false);
  connect(undo, &QAction::triggered, undo_, &QUndoStack::undo);
  connect(undo_, &QUndoStack::canUndoChanged, undo,
          [this, undo](bool can) { undo->setEnabled(editable_ && can); });
  connect(undo_, &QUndoStack::undoTextChanged, undo,
          [undo](const QString& t) { undo->setToolTip("Undo " + t); });
  auto* redo = new QAction("Redo", this);
  redo->setShortcut(QKeySequence::Redo);
  redo->setEnabled(false);
  connect(redo, &QAction::triggered, undo_, &QUndoStack::redo);
  connect(undo_, &QUndoStack::canRedoChanged, redo,
          [this, redo](bool can) { redo->setEnabled(editable_ && can); });
  connect(undo_, &QUndoStack::redoTextChanged, redo,
          [redo](const QString& t) { redo->setToolTip("Redo " + t); });
  for (QAction* a : {undo, redo}) {
    a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    addAction(a);
  }
  auto* undo_b = new QToolButton;
  undo_b->setObjectName("undo");
  undo_b->setDefaultAction(undo);
  auto* redo_b = new QToolButton;
  redo_b->setObjectName("redo");
  redo_b->setDefaultAction(redo);
  collapse_ = new QCheckBox("Collapse repeats");
  collapse_->setObjectName("collapse");
  collapse_->setChecked(true);
  collapse_->setToolTip("Draw consecutive identical layers as one row ×N");
  status_ = new QLabel;
  status_->setObjectName("status");
  auto* bar = new QHBoxLayout;
  for (QWidget* w : std::initializer_list<QWidget*>{presets_, open, save, undo_b, redo_b})
    bar->addWidget(w);
  bar->addSpacing(12);
  bar->addWidget(status_, 1);
  bar->addWidget(collapse_);

  // Left: model-level form.
  form_ = new ModelForm;
  auto* form_box = new QGroupBox("Model");
  auto* form_layout = new QVBoxLayout(form_box);
  form_layout->addWidget(form_);
  form_layout->addStretch(1);
  auto* form_scroll = new QScrollArea;
  form_scroll->setWidget(form_box);
  form_scroll->setWidgetResizable(true);
  form_scroll->setFrameShape(QFrame::NoFrame);
  form_scroll->setMinimumWidth(205);

  // Centre: the stack and its layer buttons.
  stack_ = new LayerStackView;
  auto* stack_scroll = new QScrollArea;
  stack_scroll->setWidget(stack_);
  stack_scroll->setWidgetResizable(true);
  stack_scroll->setObjectName("stack_scroll");
  insert_ = button("Insert", "insert_layer", "Insert a shared block after the selection");
  duplicate_ = button("Duplicate", "duplicate_layers", "Copy the selected layers after them");
  delete_ = button("Delete", "delete_layers", "Remove the selected layers");
  up_ = button("Move up", "move_up", "Move the selected layers up (or drag them)");
  down_ = button("Move down", "move_down", "Move the selected layers down (or drag them)");
  auto* layer_buttons = new QHBoxLayout;
  for (QPushButton* b : {insert_, duplicate_, delete_, up_, down_}) layer_buttons->addWidget(b);
  layer_buttons->addStretch(1);
  auto* hint = new QLabel(
      "Click a layer to edit it, shift-click for a range, drag to reorder; "
      "click outside the layers to edit the shared block.");
  hint->setWordWrap(true);
  hint->setStyleSheet("color: #757575;");
  auto* centre = new QWidget;
  auto* centre_layout = new QVBoxLayout(centre);
  centre_layout->setContentsMargins(0, 0, 0, 0);
  centre_layout->addWidget(stack_scroll, 1);
  centre_layout->addLayout(layer_buttons);
  centre_layout->addWidget(hint);

  // Right: block editor.
  editor_ = new BlockEditor;
  auto* editor_scroll = new QScrollArea;
  editor_scroll->setWidget(editor_);
  editor_scroll->setWidgetResizable(true);
  editor_scroll->setFrameShape(QFrame::NoFrame);
  // Never scrolled sideways ("Attention" read "ntention", "Layer 3" "yer 3"):
  // wide enough for the widest field row of any component, wrapping the rest.
  editor_scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  editor_scroll->setMinimumWidth(
      std::max(250, editor_->needed_width() +
                        editor_scroll->style()->pixelMetric(QStyle::PM_ScrollBarExtent) + 4));

  auto* top = new QSplitter(Qt::Horizontal);
  top->addWidget(form_scroll);
  top->addWidget(centre);
  top->addWidget(editor_scroll);
  top->setStretchFactor(0, 0);
  top->setStretchFactor(1, 1);
  top->setStretchFactor(2, 0);
  top->setChildrenCollapsible(false);

  // Bottom: problems, per-layer analysis and totals.
  errors_ = new QLabel;
  errors_->setObjectName("errors");
  errors_->setWordWrap(true);
  errors_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  errors_->setStyleSheet(
      "QLabel { color: #b71c1c; background: #ffebee; border: 1px solid #ef9a9a;"
      " border-radius: 4px; padding: 4px; }");
  errors_->hide();
  table_ = new QTableWidget(0, 6);
  table_->setObjectName("layer_table");
  table_->setHorizontalHeaderLabels(
      {"layer", "components", "params", "FLOPs/token", "activations", "weights"});
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionMode(QAbstractItemView::NoSelection);
  table_->verticalHeader()->hide();
  table_->verticalHeader()->setDefaultSectionSize(22);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
  table_->setAlternatingRowColors(true);
  totals_ = new QLabel;
  totals_->setObjectName("totals");
  totals_->setWordWrap(true);
  totals_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* bottom = new QWidget;
  auto* bottom_layout = new QVBoxLayout(bottom);
  bottom_layout->setContentsMargins(0, 0, 0, 0);
  bottom_layout->addWidget(table_, 1);
  bottom_layout->addWidget(totals_);

  auto* split = new QSplitter(Qt::Vertical);
  split->addWidget(top);
  split->addWidget(bottom);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  split->setChildrenCollapsible(false);

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(bar);
  layout->addWidget(errors_);
  layout->addWidget(split, 1);

  edit_widgets_ = {presets_, open};
  undo_actions_ = {undo, redo};

  connect(form_, &ModelForm::block_field_edited, this, &ArchPanel::block_field_edited);
  connect(form_, &ModelForm::model_field_edited, this, &ArchPanel::model_field_edited);
  connect(editor_, &BlockEditor::component_edited, this, [this](Slot s, const QString& name) {
    ModelConfig next = model_;
    const int64_t a = stack_->selection_first(), b = stack_->selection_last();
    if (a < 0)
      set_shared_component(next, s, name.toStdString());
    else
      set_layer_component(next, a, b, s, name.toStdString());
    commit(next, QString("%1 → %2").arg(slot_key(s), name));
  });
  connect(editor_, &BlockEditor::field_edited, this, [this](const QString& key, double v) {
    const BlockField* f = find_block_field(key.toStdString());
    if (!f) return;
    ModelConfig next = model_;
    const int64_t a = stack_->selection_first(), b = stack_->selection_last();
    if (a < 0)
      set_shared_field(next, *f, v);
    else
      set_layer_field(next, a, b, *f, v);
    commit(next, "Set " + key);
  });
  connect(editor_, &BlockEditor::reset_requested, this, &ArchPanel::reset_selection);
  connect(stack_, &LayerStackView::selection_changed, this, [this] {
    refresh_editor();
    update_buttons();
  });
  connect(stack_, &LayerStackView::move_requested, this,
          [this](int64_t first, int64_t last, int64_t to) {
            ModelConfig next = model_;
            const int64_t at = move_layers(next, first, last, to);
            commit(next, "Move layers", at, at + (last - first));
          });
  connect(collapse_, &QCheckBox::toggled, stack_, &LayerStackView::set_collapse);
  connect(insert_, &QPushButton::clicked, this, &ArchPanel::insert_layer);
  connect(duplicate_, &QPushButton::clicked, this, &ArchPanel::duplicate_selection);
  connect(delete_, &QPushButton::clicked, this, &ArchPanel::delete_selection);
  connect(up_, &QPushButton::clicked, this, [this] { move_selection(-1); });
  connect(down_, &QPushButton::clicked, this, [this] { move_selection(+1); });

  set_model(ModelConfig{});
}

// ---------------------------------------------------------------- public API

void ArchPanel::set_model(const ModelConfig& m, std::string preset_name) {
  model_ = m;
  preset_name_ = std::move(preset_name);
  undo_->clear();
  stack_->select(-1, -1);
  refresh_views();
}

void ArchPanel::apply_to(ModelConfig& m) const {
  m = model_;
}

std::vector<std::string> ArchPanel::errors() const {
  return validation_errors(model_);
}

void ArchPanel::show_analysis(const ModelConfig& m, int64_t seq_len,
                              const std::vector<std::string>& errors, int64_t batch_size) {
  seq_len_ = seq_len;
  if (batch_size > 0) batch_ = batch_size;
  show_problems(m, errors);
  draw_analysis(m);
}

void ArchPanel::set_editable(bool on) {
  editable_ = on;
  form_->set_editable(on);
  editor_->set_editable(on);
  stack_->set_interactive(on);
  for (QWidget* w : edit_widgets_) w->setEnabled(on);
  undo_actions_[0]->setEnabled(on && undo_->canUndo());
  undo_actions_[1]->setEnabled(on && undo_->canRedo());
  update_buttons();
}

void ArchPanel::select_layers(int64_t first, int64_t last) {
  stack_->select(first, last);
}

QSpinBox* ArchPanel::d_model_box() const {
  return form_->spin("d_model");
}
QSpinBox* ArchPanel::n_heads_box() const {
  return form_->spin("n_heads");
}
QSpinBox* ArchPanel::n_layers_box() const {
  return form_->spin("n_layers");
}

// ---------------------------------------------------------------- edits

void ArchPanel::commit(const ModelConfig& next, const QString& what, int64_t first, int64_t last,
                       const std::string* preset) {
  const std::string next_preset = preset ? *preset : preset_name_;
  if (next == model_ && next_preset == preset_name_ && first == stack_->selection_first() &&
      last == stack_->selection_last()) {
    refresh_views();  // e.g. a rejected value: show the model's again
    return;
  }
  Snapshot before{model_, preset_name_, stack_->selection_first(), stack_->selection_last()};
  Snapshot after{next, next_preset, first, last};
  undo_->push(new SnapshotCommand<Snapshot>([this](const Snapshot& s) { restore(s); },
                                            std::move(before), std::move(after), what));
}

void ArchPanel::commit(const ModelConfig& next, const QString& what) {
  commit(next, what, stack_->selection_first(), stack_->selection_last());
}

void ArchPanel::restore(const Snapshot& s) {
  model_ = s.model;
  preset_name_ = s.preset;
  stack_->set_model(model_);
  stack_->select(s.first, s.last);
  refresh_views();
  emit changed();
}

void ArchPanel::block_field_edited(const QString& key, double v) {
  const BlockField* f = find_block_field(key.toStdString());
  if (!f) return;
  ModelConfig next = model_;
  set_shared_field(next, *f, v);
  commit(next, "Set " + key);
}

void ArchPanel::model_field_edited(const QString& key, double v) {
  ModelConfig next = model_;
  int64_t first = stack_->selection_first(), last = stack_->selection_last();
  if (key == "n_layers") {
    set_n_layers(next, int64_t(v));
    if (first >= next.n_layers) first = last = -1;
    last = std::min(last, next.n_layers - 1);
  } else if (key == "tie_embeddings") {
    next.tie_embeddings = v != 0;
  } else if (key == "init_std") {
    next.init_std = v;
  }
  commit(next, "Set " + key, first, last);
}

void ArchPanel::insert_layer() {
  ModelConfig next = model_;
  const int64_t at = stack_->selection_first() >= 0 ? stack_->selection_last() + 1 : next.n_layers;
  bl::insert_layer(next, at);
  commit(next, "Insert layer", at, at);
}

void ArchPanel::duplicate_selection() {
  const int64_t a = stack_->selection_first(), b = stack_->selection_last();
  if (a < 0) return;
  ModelConfig next = model_;
  duplicate_layers(next, a, b);
  commit(next, "Duplicate layers", b + 1, b + 1 + (b - a));
}

void ArchPanel::delete_selection() {
  const int64_t a = stack_->selection_first(), b = stack_->selection_last();
  if (a < 0) return;
  ModelConfig next = model_;
  remove_layers(next, a, b);
  commit(next, "Delete layers", -1, -1);
}

void ArchPanel::move_selection(int delta) {
  const int64_t a = stack_->selection_first(), b = stack_->selection_last();
  if (a < 0 || a + delta < 0 || b + delta >= model_.n_layers) return;
  ModelConfig next = model_;
  const int64_t at = move_layers(next, a, b, a + delta);
  commit(next, delta < 0 ? "Move layers up" : "Move layers down", at, at + (b - a));
}

void ArchPanel::reset_selection() {
  const int64_t a = stack_->selection_first(), b = stack_->selection_last();
  if (a < 0) return;
  ModelConfig next = model_;
  std::vector<BlockConfig> layers = layer_blocks(next);
  for (int64_t i = a; i <= b && i < int64_t(layers.size()); ++i) layers[size_t(i)] = next.block;
  set_layer_blocks(next, std::move(layers));
  commit(next, "Reset layers to the shared block");
}

bool ArchPanel::load_preset_model(const QString& name) {
  try {
    ModelConfig next = load_preset(name.toStdString()).model;
    next.vocab_size = model_.vocab_size;  // follows the corpus, not the preset
    const std::string preset = name.toStdString();
    commit(next, "Preset " + name, -1, -1, &preset);
    status("Loaded preset " + name);
    return true;
  } catch (const std::exception& e) {
    status(e.what(), true);
    return false;
  }
}

bool ArchPanel::load_json(const QString& path) {
  try {
    const nlohmann::json j = read_json_file(path.toStdString());
    // A preset file wraps the model; a model config has "block" at the top.
    ModelConfig next = j.is_object() && j.contains("model") && !j.contains("block")
                           ? preset_from_json(j).model
                           : model_config_from_json(j);
    next.vocab_size = model_.vocab_size;
    const std::string no_preset;
    commit(next, "Open " + QFileInfo(path).fileName(), -1, -1, &no_preset);
    status("Loaded " + QFileInfo(path).fileName());
    return true;
  } catch (const std::exception& e) {
    status(e.what(), true);
    return false;
  }
}

bool ArchPanel::save_json(const QString& path) {
  try {
    save_model_config(path.toStdString(), model_);
    status("Saved " + QFileInfo(path).fileName());
    return true;
  } catch (const std::exception& e) {
    status(e.what(), true);
    return false;
  }
}

void ArchPanel::status(const QString& text, bool error) {
  status_->setText(text);
  status_->setToolTip(text);
  status_->setStyleSheet(error ? "color: #b71c1c;" : "color: #2e7d32;");
}

// ---------------------------------------------------------------- views

void ArchPanel::refresh_views() {
  form_->set_model(model_);
  stack_->set_model(model_);
  show_problems(model_, errors());
  draw_analysis(model_);
  refresh_editor();
  update_buttons();
}

void ArchPanel::refresh_editor() {
  const int64_t a = stack_->selection_first(), b = stack_->selection_last();
  if (a < 0) {
    editor_->set_block(model_.block, "Shared block · all layers", true, {});
    std::map<std::string, QString> shared;
    for (auto& [k, v] : form_errors_) shared[k] = v;
    editor_->mark_invalid(shared);
    return;
  }
  const std::vector<BlockConfig> layers = layer_blocks(model_);
  if (a >= int64_t(layers.size())) return;
  const QString title = a == b ? QString("Layer %1").arg(a) : QString("Layers %1–%2").arg(a).arg(b);
  editor_->set_block(layers[size_t(a)], title, false,
                     differing_fields(layers[size_t(a)], model_.block));
  std::map<std::string, QString> errs;
  for (int64_t i = a; i <= b; ++i) {
    auto it = layer_errors_.find(i);
    if (it == layer_errors_.end()) continue;
    for (auto& [k, v] : it->second) add_line(errs, k, v);
  }
  editor_->mark_invalid(errs);
}

void ArchPanel::update_buttons() {
  const int64_t a = stack_->selection_first(), b = stack_->selection_last();
  insert_->setEnabled(editable_);
  duplicate_->setEnabled(editable_ && a >= 0);
  delete_->setEnabled(editable_ && a >= 0 && b - a + 1 < model_.n_layers);
  up_->setEnabled(editable_ && a > 0);
  down_->setEnabled(editable_ && a >= 0 && b + 1 < model_.n_layers);
}

void ArchPanel::show_problems(const ModelConfig& m, const std::vector<std::string>& errors) {
  (void)m;
  // Map each message to the fields it names: "block.d_model", "block_configs[2].n_kv_heads",
  // top-level "n_layers"; a leading "model." (preset-level errors) is optional.
  static const QRegularExpression shared_re(R"((?:^|[^\w\]])(?:model\.)?block\.(\w+))");
  static const QRegularExpression layer_re(R"((?:model\.)?block_configs\[(\d+)\](?:\.(\w+))?)");
  static const QRegularExpression top_re(
      R"(^(?:[^:]*: )?(?:model\.)?(n_layers|vocab_size|init_std|tie_embeddings|block_configs)\b(?!\[))");
  // (?!\[): "block_configs[2].window_size" is layer 2's field (layer_re), not
  // the layer count; only a bare "block_configs" (its length) maps to n_layers.
  form_errors_.clear();
  layer_errors_.clear();
  std::set<int64_t> bad_layers;
  QStringList lines;
  for (const std::string& e : errors) {
    const QString line = QString::fromStdString(e);
    for (auto it = shared_re.globalMatch(line); it.hasNext();)
      add_line(form_errors_, it.next().captured(1).toStdString(), line);
    for (auto it = layer_re.globalMatch(line); it.hasNext();) {
      const QRegularExpressionMatch mt = it.next();
      const int64_t layer = mt.captured(1).toLongLong();
      bad_layers.insert(layer);
      if (!mt.captured(2).isEmpty())
        add_line(layer_errors_[layer], mt.captured(2).toStdString(), line);
    }
    if (const QRegularExpressionMatch mt = top_re.match(line); mt.hasMatch()) {
      const std::string key = mt.captured(1).toStdString();
      add_line(form_errors_, key == "block_configs" ? "n_layers" : key, line);
    }
  }
  for (const QString& g : group_errors(errors)) lines << "• " + g.toHtmlEscaped();
  errors_->setText(lines.join("<br>"));
  errors_->setVisible(!lines.isEmpty());
  form_->mark_invalid(form_errors_);
  stack_->set_error_layers(bad_layers);
  refresh_editor();
}

void ArchPanel::draw_analysis(const ModelConfig& m) {
  const int64_t seq = seq_len_ > 0 ? seq_len_ : m.block.max_seq_len;
  const bool model_ok = validation_errors(m).empty();
  if (!model_ok) {
    analysis_ = ArchAnalysis{};
    analysed_seq_ = -1;
  } else if (!(m == analysed_ && seq == analysed_seq_ && batch_ == analysed_batch_)) {
    analysis_ = analyse_architecture(m, seq, batch_);
    analysed_ = m;
    analysed_seq_ = seq;
    analysed_batch_ = batch_;
  }
  const ArchAnalysis& a = analysis_;
  std::vector<int64_t> params;
  for (const PartAnalysis& p : a.layers) params.push_back(p.params);
  stack_->set_layer_params(params);

  table_->setRowCount(0);
  if (!model_ok || !a.error.empty()) {
    totals_->setText(!a.error.empty() ? "Analysis failed: " + QString::fromStdString(a.error)
                                      : "Fix the problems above to see parameters and FLOPs.");
    return;
  }
  const std::vector<BlockConfig> layers = layer_blocks(m);
  auto add_row = [&](const QString& name, const QString& comps, const PartAnalysis& p, bool bold,
                     const QColor& colour) {
    const int r = table_->rowCount();
    table_->insertRow(r);
    const QStringList cells = {name,
                               comps,
                               human(double(p.params)),
                               human(p.flops_per_token),
                               bytes(p.activation_bytes),
                               bytes(p.weight_bytes)};
    for (int c = 0; c < cells.size(); ++c) {
      auto* item = new QTableWidgetItem(cells[c]);
      if (c >= 2) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
      if (bold) {
        QFont f = item->font();
        f.setBold(true);
        item->setFont(f);
      }
      if (colour.isValid() && c == 0) item->setForeground(colour);
      table_->setItem(r, c, item);
    }
  };
  const BlockConfig& base = m.block;
  add_row("embedding",
          QString("%1 × %2").arg(m.vocab_size).arg(base.d_model) +
              (base.position == "learned" ? " + learned positions" : ""),
          a.embedding, false, QColor());
  for (size_t i = 0; i < a.layers.size() && i < layers.size(); ++i) {
    const BlockConfig& b = layers[i];
    QString comps =
        QString::fromStdString(b.attention + " · " + b.ffn + " · " + b.norm + " · " + b.position);
    const bool over = !(b == base);
    if (over) comps += "  (override)";
    add_row(QString("layer %1").arg(i), comps, a.layers[i], false,
            over ? QColor(0xe6, 0x51, 0x00) : QColor());
  }
  add_row("head",
          QString("final %1 + LM head%2")
              .arg(QString::fromStdString(base.norm), m.tie_embeddings ? " (tied)" : ""),
          a.head, false, QColor());
  add_row("total", "", a.total, true, QColor());

  QString t = QString("<b>%1 parameters</b>").arg(human(double(a.total.params)));
  if (a.total.active_params != a.total.params)
    t += QString(" (%1 active)").arg(human(double(a.total.active_params)));
  t += QString(" · <b>%1FLOPs/token</b> training at seq_len %2")
           .arg(human(a.total.flops_per_token), QString::number(seq));
  t += QString(" · weights %1 (≈ %2 with gradients and AdamW state)")
           .arg(bytes(a.total.weight_bytes), bytes(4 * a.total.weight_bytes));
  t += QString(" · activations ≈ %1 per step (%2 × %3 tokens)")
           .arg(bytes(a.total.activation_bytes))
           .arg(batch_)
           .arg(seq);
  t += " · <span style='color:#757575'>counted on the engine's model</span>";
  totals_->setText(t);
}

}  // namespace bl
