// A row x step heatmap (rows: layers or experts; columns: steps), coloured by
// a perceptually uniform sequential map (viridis), linear or log scale, with a
// colour bar and a hover readout. Painted from an image of the grid, one
// pixel per cell, scaled to the widget: no per-cell widgets or items.
#pragma once

#include <QImage>
#include <QString>
#include <QWidget>
#include <vector>

#include "inspect/heatmap_data.h"

namespace bl {

class HeatmapView : public QWidget {
  Q_OBJECT

 public:
  explicit HeatmapView(QWidget* parent = nullptr);
  /// Shows `g`; rows flagged -1 / +1 (flag_experts) get a marker and a label suffix.
  void set_grid(HeatmapGrid g, std::vector<int> flags = {});
  void set_log_scale(bool on);
  const HeatmapGrid& grid() const { return grid_; }
  /// "row, step S: value" of the cell under a widget position ("" outside the cells).
  QString readout_at(const QPoint& p) const;
  /// The colour a value is drawn with under the current scale.
  QColor color_of(double v) const;
  /// The plot rectangle (cells), in widget coordinates.
  QRect cells_rect() const;

 signals:
  void hovered(const QString& readout);

 protected:
  void paintEvent(QPaintEvent*) override;
  void mouseMoveEvent(QMouseEvent* e) override;
  void leaveEvent(QEvent*) override;

 private:
  void rebuild_image();
  HeatmapGrid grid_;
  std::vector<int> flags_;
  bool log_ = false;
  double pos_min_ = 0;  // smallest positive value of the grid (log scale's floor), 0 if none
  QImage image_;
};

}  // namespace bl
