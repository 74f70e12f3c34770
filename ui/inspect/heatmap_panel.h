// The Heatmaps tab: a stored run's per-layer training diagnostics
// (diag/grad_norm, diag/weight_norm, diag/update_ratio, diag/eff_rank, ...)
// and per-expert MoE load as row x step heatmaps, with a hover readout; MoE
// experts that are dead or overloaded over the last steps are flagged. Reads
// the store through a read-only connection, polled while the run is running.
#pragma once

#include <QWidget>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "inspect/heatmap_data.h"
#include "store/experiment_store.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QTimer;

namespace bl {

class HeatmapView;

class HeatmapPanel : public QWidget {
  Q_OBJECT

 public:
  explicit HeatmapPanel(std::string db_path, QWidget* parent = nullptr);
  ~HeatmapPanel() override;
  /// Re-reads the run list (keeps the chosen run) and the chosen family.
  void reload();
  /// Chooses a run / family by id / name; false if not listed.
  bool select_run(int64_t run_id);
  bool select_family(const QString& family);
  QComboBox* run_box() const { return runs_; }
  QComboBox* family_box() const { return families_; }
  QCheckBox* log_box() const { return log_; }
  HeatmapView* view() const { return view_; }
  QLabel* readout() const { return readout_; }
  QLabel* flags_label() const { return flags_; }

 private:
  void load_families();
  void load_grid();
  ExperimentStore* store();

  std::string db_path_;
  std::unique_ptr<ExperimentStore> reader_;
  std::vector<HeatmapFamily> family_list_;
  QComboBox* runs_;
  QComboBox* families_;
  QCheckBox* log_;
  HeatmapView* view_;
  QLabel* readout_;
  QLabel* flags_;
  QTimer* poll_;
};

}  // namespace bl
