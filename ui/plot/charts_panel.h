// The live/compare charts: train and eval loss, tokens/s, grad norm and
// learning rate for one or more runs, with a shared X axis choice (step, wall
// time, tokens), EMA smoothing slider and log-scale toggle. Each run shown
// gets its own colour of a qualitative palette (the first one no other shown
// run uses, kept while it is shown); with several runs one shared legend above
// the charts names them. Below the four, "Add chart" draws any other metric the
// shown runs logged (MoE balance / z losses, expert load, MTP loss, step time,
// all-reduce time, ...), one chart each, removable; the list is remembered.
// With run groups set (the same config over seeds, ...), each group is drawn
// as the mean of its runs aligned by step with a shaded ±std or min/max band,
// in the group's palette colour, and the legend reads "label (n runs)".
// Qt Charts stays inside PlotView.
#pragma once

#include <QColor>
#include <QSize>
#include <QString>
#include <QStringList>
#include <QWidget>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "browser/run_groups.h"
#include "train/metrics.h"

class QCheckBox;
class QComboBox;
class QGridLayout;
class QLabel;
class QPushButton;
class QSlider;
class QTimer;

namespace bl {

class PlotView;

/// A run's curves, one entry per optimizer step (columns aligned by index).
struct RunCurves {
  int64_t id = 0;
  QString name;
  std::vector<int64_t> step;  // 0-based index of the step
  std::vector<double> wall;   // seconds since the run started
  std::vector<double> tokens, loss, tokens_per_sec, grad_norm, learning_rate;
  std::vector<std::pair<int64_t, double>> evals;  // (step, eval loss)
  /// Every other metric by name: (step, value), steps increasing. Logged at
  /// every step (step_time_ms, MoE losses) or only some (diagnostics).
  std::map<std::string, std::vector<std::pair<int64_t, double>>> extra;
  /// Training (forward + backward) FLOPs per token, for the FLOPs x axis; 0 = unknown.
  double flops_per_token = 0;

  void add(const StepMetrics& m);
  size_t size() const { return step.size(); }
};

/// The `index`-th colour of the charts' qualitative palette: 12 hand-picked
/// hues (Okabe-Ito + Tableau, no two alike), then golden-angle hues.
QColor qualitative_color(int index);

/// Runs drawn together as one mean curve with a band.
struct ChartGroup {
  QString label;
  std::vector<int64_t> run_ids;
};

class ChartsPanel : public QWidget {
  Q_OBJECT

 public:
  enum class XAxis { kStep = 0, kWallTime = 1, kTokens = 2, kFlops = 3 };
  enum class Band { kStd = 0, kMinMax = 1 };  // a group's shaded band: mean ± 1 std, or min..max

  explicit ChartsPanel(QWidget* parent = nullptr);

  /// Adds an (empty) run if not present.
  void add_run(int64_t id, const QString& name);
  /// Training FLOPs per token of run `id` (its FLOPs x axis: tokens seen times this).
  void set_flops_per_token(int64_t id, double flops_per_token);
  /// Adds or replaces a run with all its data.
  void set_run(RunCurves c);
  /// Adds or replaces several runs, drawn once.
  void set_runs(std::vector<RunCurves> runs);
  /// Draws groups of the shown runs instead of single runs (empty: one line per
  /// run). Shown runs in no group are not drawn; absent ids are skipped.
  void set_groups(std::vector<ChartGroup> groups);
  const std::vector<ChartGroup>& groups() const { return groups_; }
  bool grouped() const { return !groups_.empty(); }
  void set_band(Band b);
  Band band() const { return band_; }
  /// Group `index`'s curve of `metric` ("loss", "eval_loss", "tokens_per_sec",
  /// "grad_norm", "learning_rate" or an extra metric) on the current x axis.
  GroupCurve group_curve(size_t index, const std::string& metric) const;
  /// The palette colour of group `index` (its line, band and legend swatch).
  QColor group_color(size_t index) const { return qualitative_color(int(index)); }
  void remove_run(int64_t id);
  void clear();
  bool has_run(int64_t id) const { return runs_.count(id) > 0; }
  std::vector<int64_t> run_ids() const;
  const RunCurves* curves(int64_t id) const;
  /// Live updates (the run must have been added).
  void append_steps(int64_t id, const std::vector<StepMetrics>& steps);
  void append_evals(int64_t id, const std::vector<std::pair<int64_t, double>>& evals);

  void set_x_axis(XAxis x);
  XAxis x_axis() const { return x_; }
  void set_smoothing(double weight);  // 0 .. 0.99
  void set_log_y(bool on);
  /// Draws pending changes now (tests, screenshots, export).
  void redraw_now();
  /// The colour a shown run is drawn in, its group's when grouped (invalid for a run not shown).
  QColor color_of(int64_t id) const;
  /// Writes the four charts (and the legend) without the controls, `size`
  /// pixels, as PNG or SVG by the file suffix; false with `error` set on failure.
  bool export_image(const QString& path, QSize size, QString* error = nullptr);
  /// Chart colours for a dark window.
  void set_dark(bool on);

  /// Metrics the shown runs logged beyond the four fixed charts, sorted.
  QStringList available_metrics() const;
  /// Adds a chart of `metric` below the others (no-op if it is shown);
  /// removes one. Emits metric_charts_changed.
  void add_metric_chart(const QString& metric);
  void remove_metric_chart(const QString& metric);
  /// The added charts' metrics, in order; setting replaces them (restoring a layout).
  QStringList metric_charts() const;
  void set_metric_charts(const QStringList& metrics);
  /// The chart of `metric`, or null.
  PlotView* metric_plot(const QString& metric) const;
  QPushButton* add_chart_button() const { return add_chart_; }
  QLabel* legend() const { return legend_; }

  /// The four fixed charts, then the added metric charts.
  std::vector<PlotView*> plots() const;
  PlotView* loss_plot() const { return loss_; }
  PlotView* throughput_plot() const { return tps_; }
  PlotView* grad_norm_plot() const { return grad_; }
  PlotView* lr_plot() const { return lr_; }
  QComboBox* x_axis_box() const { return x_box_; }
  /// "±1 std" / "min–max", shown while grouped.
  QComboBox* band_box() const { return band_box_; }
  QSlider* smoothing_slider() const { return smooth_; }
  QCheckBox* log_box() const { return log_; }

 signals:
  void metric_charts_changed();

 private:
  struct MetricChart {
    QString metric;
    QWidget* frame = nullptr;  // close button + plot
    PlotView* plot = nullptr;
    std::map<int64_t, int> series;               // run -> series id (ungrouped)
    std::vector<int> group_series, group_bands;  // per group (grouped)
  };
  void fill_metric_chart(MetricChart& m);
  void relayout_metric_charts();
  struct Slot {
    RunCurves c;
    int loss = -1, eval = -1, tps = -1, grad = -1, lr = -1;  // series ids
  };
  struct GroupSlot {  // series and band ids of a drawn group, -1 = none
    int loss = -1, eval = -1, tps = -1, grad = -1, lr = -1;
    int loss_band = -1, tps_band = -1, grad_band = -1, lr_band = -1;
  };
  void rebuild();         // re-creates every series from the stored curves
  void rebuild_groups();  // rebuild() when grouped
  /// New aggregates into the existing group series: all groups, or those with a grown run.
  void refill_groups(bool all);
  void fill_group_metric_chart(MetricChart& m);
  std::vector<std::vector<CurvePoint>> group_points(const ChartGroup& g,
                                                    const std::string& metric) const;
  void set_group_points(PlotView* p, int series, int band, const GroupCurve& c);
  void add_series(Slot& s);
  void push_points(Slot& s, size_t from);  // steps [from, size)
  void push_evals(Slot& s, size_t from);   // evals [from, size)
  double x_of(const RunCurves& c, size_t i) const;
  double eval_x(const RunCurves& c, int64_t step) const;

  std::map<int64_t, Slot> runs_;
  XAxis x_ = XAxis::kStep;
  PlotView *loss_, *tps_, *grad_, *lr_;
  QComboBox* x_box_;
  QComboBox* band_box_;
  QLabel* band_label_;
  QSlider* smooth_;
  QLabel* smooth_label_;
  QCheckBox* log_;
  QLabel* legend_;  // shared legend, shown with two or more runs
  QPushButton* add_chart_;
  QGridLayout* grid_;
  std::vector<MetricChart> metric_charts_;
  std::map<int64_t, int> colors_;  // run -> palette index, while shown
  std::vector<ChartGroup> groups_;
  std::vector<GroupSlot> group_slots_;  // per group
  Band band_ = Band::kStd;
  QTimer* refill_timer_;     // coalesces live appends into one re-aggregation
  std::set<int64_t> grown_;  // runs appended to since the last refill
  void update_legend();
  /// Swatch colour and text per legend entry: "#id name" per run, or
  /// "label (n runs)" per group (elided).
  std::vector<std::pair<QColor, QString>> legend_items() const;
};

}  // namespace bl
