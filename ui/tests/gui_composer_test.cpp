// The architecture composer driven like a user: spin boxes typed into, combo
// boxes stepped with the keyboard, layers clicked, shift-clicked and dragged
// in the stack; checks the resulting ModelConfig, inline validation, layer
// operations, collapsed "×N" rows, undo/redo, JSON round trips, and that the
// analysis counts what the engine's LanguageModel counts.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QImage>
#include <QLabel>
#include <QMenu>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollArea>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>
#include <QUndoStack>

#include "arch/arch_edit.h"
#include "arch/arch_panel.h"
#include "arch/block_editor.h"
#include "arch/error_groups.h"
#include "arch/layer_stack_view.h"
#include "arch/model_form.h"
#include "core/arch_analysis.h"
#include "core/components.h"
#include "core/model.h"
#include "core/presets.h"

using namespace bl;

namespace {

ModelConfig small_model(int64_t layers) {
  ModelConfig m;
  m.vocab_size = 65;
  m.n_layers = layers;
  m.block.d_model = 64;
  m.block.n_heads = 4;
  m.block.d_ff = 128;
  m.block.max_seq_len = 32;
  m.block.position = "learned";
  return m;
}

// Selects the text, types `text` and commits with Return, like a user.
void type_into(QWidget* w, const QString& text) {
  auto* s = qobject_cast<QAbstractSpinBox*>(w);
  QVERIFY2(s, "not a spin box");
  QTest::keyClick(s, Qt::Key_A, Qt::ControlModifier);
  QTest::keyClicks(s, text);
  QTest::keyClick(s, Qt::Key_Return);
}

// Steps a closed combo box with the arrow keys until `text` is current (emits activated()).
void choose(QComboBox* c, const QString& text) {
  const int target = c->findText(text);
  QVERIFY2(target >= 0, qPrintable("no item " + text));
  while (c->currentIndex() != target)
    QTest::keyClick(c, c->currentIndex() < target ? Qt::Key_Down : Qt::Key_Up);
}

// Clicks the stack row that draws layer `layer` (scrolling it into view first).
void click_layer(ArchPanel& p, int64_t layer, Qt::KeyboardModifiers mods = {}) {
  LayerStackView* v = p.stack();
  for (int r = 0; r < int(v->rows().size()); ++r) {
    if (v->rows()[size_t(r)].first <= layer && layer <= v->rows()[size_t(r)].last) {
      QTest::mouseClick(v, Qt::LeftButton, mods, v->row_rect(r).center());
      return;
    }
  }
  QFAIL("layer not drawn");
}

void click(QWidget* w) {
  QTest::mouseClick(w, Qt::LeftButton);
}

int64_t engine_params(const ModelConfig& m) {
  LanguageModel model(m);
  return model.num_parameters();
}

}  // namespace

class ComposerTest : public QObject {
  Q_OBJECT

 private:
  std::unique_ptr<ArchPanel> make(const ModelConfig& m) {
    auto p = std::make_unique<ArchPanel>();
    p->set_model(m);
    p->resize(1400, 900);
    p->show();
    p->activateWindow();  // shortcuts (Ctrl+Z) need an active window
    if (!QTest::qWaitForWindowActive(p.get())) qWarning("window not active");
    return p;
  }

 private slots:
  void builds_two_layer_model_through_widgets() {
    auto p = make(small_model(4));
    QSignalSpy changed(p.get(), &ArchPanel::changed);
    BlockEditor* ed = p->block_editor();

    type_into(p->n_layers_box(), "2");
    QCOMPARE(p->model().n_layers, 2);
    QVERIFY(changed.count() >= 1);

    // Shared block (nothing selected): components from the registries.
    QCOMPARE(p->stack()->selection_first(), -1);
    QVERIFY(!ed->field_shown("n_kv_heads"));  // mha has no separate K/V heads
    choose(ed->combo(Slot::kAttention), "gqa");
    QVERIFY(ed->field_shown("n_kv_heads"));
    type_into(ed->field("n_kv_heads"), "2");
    choose(ed->combo(Slot::kFfn), "gated");
    choose(ed->combo(Slot::kNorm), "rms_norm");
    QVERIFY(!ed->field_shown("rope_theta"));
    choose(ed->combo(Slot::kPosition), "rope");
    QVERIFY(ed->field_shown("rope_theta"));
    type_into(ed->field("rope_theta"), "500000");
    QVERIFY(!ed->field_shown("window_size"));   // no sliding-window attention registered
    QVERIFY(p->model().block_configs.empty());  // still one shared block
    QCOMPARE(p->stack()->rows().size(), size_t(1));
    QCOMPARE(p->stack()->repeat_label(0), QString("×2"));

    // Override layer 1 only.
    click(p->collapse_box());
    QVERIFY(!p->collapse_box()->isChecked());
    QCOMPARE(p->stack()->rows().size(), size_t(2));
    click_layer(*p, 1);
    QCOMPARE(p->stack()->selection_first(), 1);
    QCOMPARE(p->stack()->selection_last(), 1);
    choose(ed->combo(Slot::kFfn), "standard");
    type_into(ed->field("d_ff"), "256");

    const ModelConfig& m = p->model();
    QCOMPARE(m.n_layers, 2);
    QCOMPARE(m.block.attention, std::string("gqa"));
    QCOMPARE(m.block.n_kv_heads.value_or(-1), 2);
    QCOMPARE(m.block.ffn, std::string("gated"));
    QCOMPARE(m.block.norm, std::string("rms_norm"));
    QCOMPARE(m.block.position, std::string("rope"));
    QCOMPARE(m.block.rope_theta, 500000.0);
    QCOMPARE(m.block.d_ff, 128);
    QCOMPARE(m.block_configs.size(), size_t(2));
    QVERIFY(m.block_configs[0] == m.block);
    BlockConfig expect = m.block;
    expect.ffn = "standard";
    expect.d_ff = 256;
    QVERIFY(m.block_configs[1] == expect);
    QVERIFY(!p->stack()->rows()[0].override_);
    QVERIFY(p->stack()->rows()[1].override_);
    QVERIFY(p->valid());

    // The editor shows the override; the analysis counts what the engine builds.
    QCOMPARE(ed->combo(Slot::kFfn)->currentText(), QString("standard"));
    QVERIFY(ed->combo(Slot::kFfn)->styleSheet().contains("e65100"));
    QCOMPARE(p->analysis().total.params, engine_params(m));
    QCOMPARE(p->analysis().layers.size(), size_t(2));
    QCOMPARE(p->table()->rowCount(), 2 + 3);  // embedding, 2 layers, head, total

    // A shared-block edit reaches layer 0 but not layer 1's overridden d_ff.
    click_layer(*p, 0);
    QTest::mouseClick(p->stack(), Qt::LeftButton, {}, QPoint(5, 2));  // outside the rows
    QCOMPARE(p->stack()->selection_first(), -1);
    type_into(p->model_form()->field("d_ff"), "192");
    QCOMPARE(p->model().block.d_ff, 192);
    QCOMPARE(p->model().get_block_config(0).d_ff, 192);
    QCOMPARE(p->model().get_block_config(1).d_ff, 256);
    // ModelConfig as the main window reads it.
    ModelConfig out;
    p->apply_to(out);
    QVERIFY(out == p->model());
  }

  void invalid_config_names_the_field() {
    auto p = make(small_model(2));
    QVERIFY(p->valid());
    QVERIFY(p->error_label()->isHidden());
    type_into(p->n_heads_box(), "5");  // 64 % 5 != 0
    QVERIFY(!p->valid());
    bool found = false;
    for (const std::string& e : p->errors())
      found = found || e.find("block.d_model (64) must be divisible by block.n_heads (5)") !=
                           std::string::npos;
    QVERIFY(found);
    QVERIFY(!p->error_label()->isHidden());
    QVERIFY(p->error_label()->text().contains("block.d_model"));
    QVERIFY(p->d_model_box()->property("invalid").toBool());
    QVERIFY(p->d_model_box()->toolTip().contains("divisible"));
    QVERIFY(p->n_heads_box()->property("invalid").toBool());
    QVERIFY(!p->n_layers_box()->property("invalid").toBool());
    QCOMPARE(p->table()->rowCount(), 0);  // no analysis of an invalid model
    QVERIFY(p->block_editor()->field("n_heads")->property("invalid").toBool());

    type_into(p->n_heads_box(), "8");
    QVERIFY(p->valid());
    QVERIFY(p->error_label()->isHidden());
    QVERIFY(!p->d_model_box()->property("invalid").toBool());
    QVERIFY(p->table()->rowCount() > 0);

    // A per-layer problem marks that layer in the stack and its field in the editor.
    click(p->collapse_box());
    click_layer(*p, 1);
    choose(p->block_editor()->combo(Slot::kAttention), "gqa");
    type_into(p->block_editor()->field("n_kv_heads"), "3");
    QVERIFY(!p->valid());
    QVERIFY(p->stack()->rows()[1].error);
    QVERIFY(!p->stack()->rows()[0].error);
    QVERIFY(p->block_editor()->field("n_kv_heads")->property("invalid").toBool());
    QVERIFY(p->error_label()->text().contains("block_configs[1].n_kv_heads"));

    // Errors handed in by the main window (preset paths with "model.") map the same way.
    p->show_analysis(p->model(), 32,
                     {"model.block.max_seq_len (32) must be >= train.seq_len (64)"});
    QVERIFY(p->model_form()->field("max_seq_len")->property("invalid").toBool());
    QVERIFY(p->error_label()->text().contains("train.seq_len"));
  }

  void layer_field_error_marks_that_field_not_n_layers() {
    ModelConfig m = small_model(3);
    m.block_configs = {m.block, m.block, m.block};
    m.block_configs[2].attention = "sliding_window_gqa";
    m.block_configs[2].n_kv_heads = m.block.n_heads;
    m.block_configs[2].window_size = 0;  // "block_configs[2].window_size (0) must be >= 1"
    auto p = make(m);
    QVERIFY(!p->valid());
    QVERIFY(p->error_label()->text().contains("block_configs[2].window_size"));
    // The regression: "block_configs" at the start of the message was read as
    // the layer count, so n_layers was framed red instead of layer 2's window.
    QVERIFY(!p->n_layers_box()->property("invalid").toBool());
    QVERIFY(p->stack()->rows().back().error);
    click(p->collapse_box());
    click_layer(*p, 2);
    QVERIFY(p->block_editor()->field("window_size")->property("invalid").toBool());
  }

  void choosing_a_component_fills_its_required_fields() {
    auto p = make(small_model(3));
    click(p->collapse_box());
    click_layer(*p, 1);
    choose(p->block_editor()->combo(Slot::kAttention), "sliding_window_gqa");
    const ModelConfig& m = p->model();
    QVERIFY(m.get_block_config(1).window_size.has_value());
    QCOMPARE(*m.get_block_config(1).window_size, std::max<int64_t>(1, m.block.max_seq_len / 4));
    QVERIFY2(p->valid(), p->errors().empty() ? "" : p->errors()[0].c_str());
    QVERIFY(p->block_editor()->field_shown("window_size"));
    // The same for the shared block and for chunked attention.
    p->select_layers(-1, -1);  // the shared block
    choose(p->block_editor()->combo(Slot::kAttention), "chunked_gqa");
    QVERIFY(p->model().block.attention_chunk_size.has_value());
    QVERIFY2(p->valid(), p->errors().empty() ? "" : p->errors()[0].c_str());
  }

  void repeated_errors_collapse_into_one_line() {
    // jamba-tiny with d_model 130: the same rule broken by every layer.
    ModelConfig m = load_preset("jamba-tiny").model;
    auto p = make(m);
    QVERIFY(p->valid());
    type_into(p->d_model_box(), "130");
    const std::vector<std::string> raw = p->errors();
    QVERIFY(raw.size() >= 8);
    const QStringList grouped = group_errors(raw);
    QVERIFY2(grouped.size() * 2 < int(raw.size()), qPrintable(grouped.join("\n")));
    bool counted = false;
    for (const QString& g : grouped)
      counted = counted || g.contains(QRegularExpression(R"(\(×\d+ layers\)$)"));
    QVERIFY2(counted, qPrintable(grouped.join("\n")));
    // The label shows the grouped lines, one bullet each.
    QCOMPARE(int(p->error_label()->text().count("•")), int(grouped.size()));

    // Unit cases: ranges, a lone message untouched, order kept.
    const QStringList g = group_errors({"a", "block_configs[0].x bad", "block_configs[1].x bad",
                                        "block_configs[2].x bad", "block_configs[5].x bad",
                                        "block_configs[3].y bad"});
    QCOMPARE(
        g, QStringList({"a", "block_configs[0–2, 5].x bad (×4 layers)", "block_configs[3].y bad"}));
  }

  void insert_duplicate_delete_reorder() {
    ModelConfig m = small_model(3);
    m.block_configs = {m.block, m.block, m.block};
    for (int i = 0; i < 3; ++i) m.block_configs[size_t(i)].d_ff = 100 * (i + 1);  // identities
    auto p = make(m);
    auto dffs = [&] {
      std::vector<int64_t> v;
      for (int64_t i = 0; i < p->model().n_layers; ++i)
        v.push_back(p->model().get_block_config(i).d_ff);
      return v;
    };
    using V = std::vector<int64_t>;
    auto* dup = p->findChild<QPushButton*>("duplicate_layers");
    auto* del = p->findChild<QPushButton*>("delete_layers");
    auto* up = p->findChild<QPushButton*>("move_up");
    auto* down = p->findChild<QPushButton*>("move_down");
    auto* ins = p->findChild<QPushButton*>("insert_layer");
    QVERIFY(dup && del && up && down && ins);
    QVERIFY(!dup->isEnabled());  // nothing selected

    click_layer(*p, 1);
    click(dup);
    QCOMPARE(dffs(), (V{100, 200, 200, 300}));
    QCOMPARE(p->stack()->selection_first(), 2);  // the copy
    click(del);
    QCOMPARE(dffs(), (V{100, 200, 300}));
    click_layer(*p, 2);
    click(up);
    QCOMPARE(dffs(), (V{100, 300, 200}));
    QCOMPARE(p->stack()->selection_first(), 1);  // follows the moved layer
    click(down);
    QCOMPARE(dffs(), (V{100, 200, 300}));
    QVERIFY(!down->isEnabled());  // already last

    // Shift-click selects a range; insert puts a shared block after it.
    click_layer(*p, 0);
    click_layer(*p, 1, Qt::ShiftModifier);
    QCOMPARE(p->stack()->selection_first(), 0);
    QCOMPARE(p->stack()->selection_last(), 1);
    click(ins);
    QCOMPARE(dffs(), (V{100, 200, m.block.d_ff, 300}));
    QCOMPARE(p->model().n_layers, 4);
    QCOMPARE(p->n_layers_box()->value(), 4);

    // Drag layer 0 below the last layer.
    LayerStackView* v = p->stack();
    click_layer(*p, 0);
    const QPoint from = v->row_rect(0).center();
    const QPoint to(from.x(), v->row_rect(int(v->rows().size()) - 1).bottom() + 2);
    QTest::mousePress(v, Qt::LeftButton, {}, from);
    QTest::mouseMove(v, from + QPoint(0, 20));
    QTest::mouseMove(v, to);
    QTest::mouseRelease(v, Qt::LeftButton, {}, to);
    QCOMPARE(dffs(), (V{200, m.block.d_ff, 300, 100}));
    QCOMPARE(v->selection_first(), 3);

    // Deleting everything but one layer is refused at the last one.
    click_layer(*p, 0);
    click_layer(*p, 3, Qt::ShiftModifier);
    QVERIFY(!del->isEnabled());
    QVERIFY(p->valid());
  }

  void collapsed_rows() {
    ModelConfig m = small_model(6);
    m.block_configs.assign(6, m.block);
    m.block_configs[4].ffn = "gated";
    auto p = make(m);
    LayerStackView* v = p->stack();
    QVERIFY(v->collapse());
    QCOMPARE(v->rows().size(), size_t(3));
    QCOMPARE(v->rows()[0].first, 0);
    QCOMPARE(v->rows()[0].last, 3);
    QCOMPARE(v->repeat_label(0), QString("×4"));
    QCOMPARE(v->repeat_label(1), QString());
    QVERIFY(!v->rows()[0].override_);
    QVERIFY(v->rows()[1].override_);
    QVERIFY(v->rows()[1].overrides.contains("ffn"));
    const int collapsed_h = v->sizeHint().height();

    // Clicking a collapsed row selects all its layers; an edit applies to them all.
    click_layer(*p, 2);
    QCOMPARE(v->selection_first(), 0);
    QCOMPARE(v->selection_last(), 3);
    choose(p->block_editor()->combo(Slot::kNorm), "rms_norm");
    for (int64_t i = 0; i < 4; ++i)
      QCOMPARE(p->model().get_block_config(i).norm, std::string("rms_norm"));
    QCOMPARE(p->model().get_block_config(5).norm, std::string("layer_norm"));
    QCOMPARE(v->rows().size(), size_t(3));

    click(p->collapse_box());
    QCOMPARE(v->rows().size(), size_t(6));
    QVERIFY(v->repeat_label(0).isEmpty());
    QVERIFY(v->sizeHint().height() > collapsed_h);

    // The drawing really shows the ×N badge colour only when collapsed.
    auto badge_pixels = [&] {
      const QImage img = v->grab().toImage();
      int n = 0;
      for (int y = 0; y < img.height(); ++y)
        for (int x = 0; x < img.width(); ++x)
          if (img.pixelColor(x, y) == QColor(0x45, 0x5a, 0x64)) ++n;
      return n;
    };
    QCOMPARE(badge_pixels(), 0);
    click(p->collapse_box());
    QVERIFY(badge_pixels() > 50);
  }

  void undo_redo() {
    auto p = make(small_model(2));
    QUndoStack* u = p->undo_stack();
    QVERIFY(!u->canUndo());
    type_into(p->d_model_box(), "128");
    type_into(p->n_layers_box(), "3");
    choose(p->block_editor()->combo(Slot::kFfn), "gated");  // arrows through 7 names: one step
    QCOMPARE(u->count(), 3);
    QSignalSpy changed(p.get(), &ArchPanel::changed);
    u->undo();
    QCOMPARE(p->model().block.ffn, std::string("standard"));
    QCOMPARE(p->block_editor()->combo(Slot::kFfn)->currentText(), QString("standard"));
    u->undo();
    QCOMPARE(p->model().n_layers, 2);
    QCOMPARE(p->n_layers_box()->value(), 2);
    u->undo();
    QCOMPARE(p->model().block.d_model, 64);
    QCOMPARE(p->d_model_box()->value(), 64);
    QVERIFY(p->model() == [] {
      ModelConfig m = small_model(2);
      return m;
    }());
    QCOMPARE(changed.count(), 3);
    u->redo();
    u->redo();
    QCOMPARE(p->model().block.d_model, 128);
    QCOMPARE(p->model().n_layers, 3);
    QCOMPARE(p->analysis().total.params, engine_params(p->model()));
    // Ctrl+Z goes through the panel's shortcut.
    QTest::keyClick(p->stack(), Qt::Key_Z, Qt::ControlModifier);
    QCOMPARE(p->model().n_layers, 2);

    // Layer operations restore the selection with the model.
    click(p->collapse_box());
    click_layer(*p, 1);
    click(p->findChild<QPushButton*>("delete_layers"));
    QCOMPARE(p->model().n_layers, 1);
    u->undo();
    QCOMPARE(p->model().n_layers, 2);
    QCOMPARE(p->stack()->selection_first(), 1);
    // set_model starts a fresh history.
    p->set_model(small_model(4));
    QVERIFY(!u->canUndo());
  }

  void json_round_trip() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    ModelConfig m = small_model(3);
    m.block.attention = "gqa";
    m.block.n_kv_heads = 2;
    m.block.position = "rope";
    m.block_configs.assign(3, m.block);
    m.block_configs[2].ffn = "gated";
    m.block_configs[2].qk_norm = true;
    m.tie_embeddings = false;
    auto p = make(m);
    const QString path = dir.filePath("model.json");
    QVERIFY(p->save_json(path));
    QVERIFY(QFile::exists(path));

    auto q = make(small_model(1));
    QVERIFY(q->load_json(path));
    QVERIFY(q->model() == m);
    QCOMPARE(q->stack()->rows().size(), size_t(2));  // [0-1] ×2, [2]
    QVERIFY(q->undo_stack()->canUndo());             // loading is undoable

    // A preset file loads its model; vocab_size stays the corpus'.
    const QString preset = QString::fromStdString(resource_dir() + "/presets/llama-tiny.json");
    QVERIFY(q->load_json(preset));
    ModelConfig expect = load_preset("llama-tiny").model;
    expect.vocab_size = 65;
    QVERIFY(q->model() == expect);

    // A broken file is refused with the engine's message; the model is kept.
    const QString bad = dir.filePath("bad.json");
    QFile f(bad);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(R"({"block": {"d_modle": 64}})");
    f.close();
    QVERIFY(!q->load_json(bad));
    QVERIFY(q->status_label()->text().contains("d_modle"));
    QVERIFY(q->status_label()->text().contains("d_model"));  // "did you mean"
    QVERIFY(q->model() == expect);
  }

  // Each component's own fields (its registry entry) are editable in the block
  // editor exactly when that component is selected.
  void every_component_shows_its_own_fields() {
    int checked = 0;
    for (Slot slot : {Slot::kAttention, Slot::kFfn, Slot::kNorm, Slot::kPosition})
      for (const std::string& name : component_names(slot)) {
        BlockConfig b;
        component(b, slot) = name;
        const auto& reg_fields = [&]() -> const std::vector<std::string>& {
          switch (slot) {
            case Slot::kAttention:
              return attention_registry().entry(name).fields;
            case Slot::kFfn:
              return ffn_registry().entry(name).fields;
            case Slot::kNorm:
              return norm_registry().entry(name).fields;
            default:
              return position_registry().entry(name).fields;
          }
        }();
        for (const std::string& f : reg_fields) {
          const BlockField* bf = find_block_field(f);
          QVERIFY2(bf, (name + " lists unknown field " + f).c_str());
          QVERIFY2(bf->used(b), (name + " hides its field " + f).c_str());
          ++checked;
        }
      }
    QVERIFY(checked >= 40);
    // A field of another component stays hidden: mha shows no window, gqa no experts.
    BlockConfig b;
    b.attention = "mha";
    QVERIFY(!find_block_field("window_size")->used(b));
    QVERIFY(!find_block_field("n_experts")->used(b));
    b.attention = "sliding_window_gqa";
    QVERIFY(find_block_field("window_size")->used(b));
  }

  void presets_menu_and_engine_counts() {
    auto p = make(small_model(2));
    for (const std::string& name : preset_names()) {
      QVERIFY(p->load_preset_model(QString::fromStdString(name)));
      ModelConfig m = load_preset(name).model;
      m.vocab_size = 65;
      QVERIFY(p->model() == m);
      QVERIFY2(p->valid(), name.c_str());
      LanguageModel model(m);
      const ArchAnalysis& a = p->analysis();
      QVERIFY(a.from_engine);
      QCOMPARE(a.total.params, model.num_parameters());
      const int64_t seq = m.block.max_seq_len;  // no training config given: the model's context
      QCOMPARE(a.total.flops_per_token, model.flops_per_token(seq));
      const std::vector<LayerStats> st = model.layer_stats(seq);
      QCOMPARE(a.layers.size(), st.size());
      for (size_t i = 0; i < st.size(); ++i) QCOMPARE(a.layers[i].params, st[i].params);
      QCOMPARE(a.total.weight_bytes, 4.0 * double(model.num_parameters()));
      QVERIFY(p->totals_label()->text().contains("parameters"));
    }
    QVERIFY(p->findChild<QToolButton*>("presets_button")->menu()->actions().size() ==
            int(preset_names().size()));
  }

  // Every component counts itself; a 7B-class config is analysed without allocating it.
  void large_models_count_without_allocation() {
    ModelConfig big;
    big.vocab_size = 32000;
    big.n_layers = 32;
    big.block.d_model = 4096;
    big.block.n_heads = 32;
    big.block.d_ff = 11008;
    big.block.attention = "gqa";
    big.block.ffn = "gated";
    big.block.norm = "rms_norm";
    big.block.position = "rope";
    big.block.bias = false;
    big.tie_embeddings = false;
    QElapsedTimer t;
    t.start();
    auto p = make(big);
    QVERIFY(p->analysis().from_engine);
    QCOMPARE(p->analysis().total.params, int64_t(6'738'415'616));  // LLaMA 2 7B, exact
    QVERIFY2(t.elapsed() < 2000, qPrintable(QString::number(t.elapsed())));
  }

  void read_only_while_training() {
    auto p = make(small_model(2));
    p->set_editable(false);
    QVERIFY(!p->n_layers_box()->isEnabled());
    QVERIFY(!p->block_editor()->combo(Slot::kAttention)->isEnabled());
    QVERIFY(!p->findChild<QPushButton*>("insert_layer")->isEnabled());
    click_layer(*p, 0);
    QCOMPARE(p->stack()->selection_first(), -1);  // the stack ignores clicks
    p->set_editable(true);
    QVERIFY(p->n_layers_box()->isEnabled());
    QVERIFY(!p->model_form()->field("n_kv_heads")->isEnabled());  // mha: not used
  }

  // Renders at the composer's target size; writes the PNG where
  // BLOCKLAB_COMPOSER_PNG points (for looking at it).
  void renders() {
    ModelConfig m = load_preset("llama-tiny").model;
    m.vocab_size = 65;
    m.block_configs.assign(size_t(m.n_layers), m.block);
    m.block_configs[2].attention = "mha";
    m.block_configs[2].n_kv_heads.reset();
    m.block_configs[2].d_ff = 512;
    auto p = make(m);
    p->select_layers(2, 2);
    QApplication::processEvents();  // lay out the editor's rows for the new selection
    const QImage img = p->grab().toImage();
    QCOMPARE(img.size(), QSize(1400, 900));
    const QImage stack = p->stack()->grab().toImage();
    bool attention_tile = false;
    for (int y = 0; y < stack.height() && !attention_tile; ++y)
      for (int x = 0; x < stack.width() && !attention_tile; ++x)
        attention_tile = stack.pixelColor(x, y) == QColor(0xbb, 0xde, 0xfb);
    QVERIFY(attention_tile);
    if (const QByteArray out = qgetenv("BLOCKLAB_COMPOSER_PNG"); !out.isEmpty())
      QVERIFY(img.save(QString::fromLocal8Bit(out)));
  }
};

QTEST_MAIN(ComposerTest)
#include "gui_composer_test.moc"
