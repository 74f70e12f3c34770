// The layer stack drawn as rows of component tiles (norm, attention, FFN,
// position) from the embedding at the top to the LM head at the bottom.
// Consecutive identical layers collapse into one row "×N"; layers that differ
// from the shared block carry an orange override stripe, layers named in a
// validation error a red frame. Click / shift-click selects a layer range,
// dragging a selected row asks to move it.
#pragma once

#include <QWidget>
#include <set>
#include <vector>

#include "core/config.h"

namespace bl {

class LayerStackView : public QWidget {
  Q_OBJECT

 public:
  struct Row {
    int64_t first = 0, last = 0;  // layer range drawn by this row
    bool override_ = false;       // differs from the shared block
    bool error = false;           // named by a validation error
    QString overrides;            // differing fields, for the tooltip
  };

  explicit LayerStackView(QWidget* parent = nullptr);

  void set_model(const ModelConfig& m);
  /// Parameter count per layer, drawn at the row's right end (empty = none).
  void set_layer_params(const std::vector<int64_t>& params);
  void set_error_layers(const std::set<int64_t>& layers);
  void set_collapse(bool on);
  bool collapse() const { return collapse_; }
  void set_interactive(bool on) { interactive_ = on; }

  /// Selected layer range; first < 0 = nothing (the shared block).
  int64_t selection_first() const { return first_; }
  int64_t selection_last() const { return last_; }
  void select(int64_t first, int64_t last);  // emits selection_changed

  const std::vector<Row>& rows() const { return rows_; }
  /// The row's rectangle in widget coordinates (for tests and tooltips).
  QRect row_rect(int row) const;
  /// "×N" on a collapsed row, else "".
  QString repeat_label(int row) const;

  QSize sizeHint() const override;
  QSize minimumSizeHint() const override;

 signals:
  void selection_changed(int64_t first, int64_t last);
  /// Drag-and-drop: move layers [first, last] so they start at `to` afterwards.
  void move_requested(int64_t first, int64_t last, int64_t to);

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseMoveEvent(QMouseEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;
  bool event(QEvent* e) override;  // tooltips

 private:
  void rebuild_rows();
  int row_at(int y) const;
  int drop_boundary(int y) const;  // row index before which a drop lands
  void paint_row(QPainter& p, int r);
  int top_of_rows() const;

  ModelConfig model_;
  std::vector<BlockConfig> layers_;
  std::vector<Row> rows_;
  std::vector<int64_t> params_;
  std::set<int64_t> error_layers_;
  bool collapse_ = true;
  bool interactive_ = true;
  int64_t first_ = -1, last_ = -1;
  int64_t anchor_ = -1;  // shift-click extends from here
  QPoint press_pos_;
  bool pressed_ = false, dragging_ = false;
  int drop_row_ = -1;
};

}  // namespace bl
