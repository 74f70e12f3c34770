// The workbench's Sweep dialog: edit or load a sweep spec (the JSON of
// `blocklab-cli sweep`, engine/sweep/sweep_spec.h), see it checked as you type
// (trial count, or the error naming the field), and run it either as a local
// sweep in N worker processes or as a Slurm job array.
// Local: the sweep runs as a `blocklab-cli sweep` child process (QProcess), so
// the window never waits on it, and a sweep keeps its resumability: closing
// the workbench stops it cleanly and running the same spec again continues
// it. Its runs appear in the Runs tab as they start.
// Slurm: the options of `blocklab-cli sweep --slurm` (partition, time limit,
// array concurrency, threads per task, shared and node-local folders); "Write
// only" writes the job scripts (--dry-run), otherwise they are submitted with
// sbatch. Both go through the engine's submit_slurm_sweep, the CLI's code.
#pragma once

#include <QDialog>
#include <QString>
#include <string>

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProcess;
class QPushButton;
class QSpinBox;
class QFormLayout;

namespace bl {

class SweepDialog : public QDialog {
  Q_OBJECT

 public:
  /// `cli`: the blocklab-cli to run ("" = $BLOCKLAB_CLI, else next to this program).
  explicit SweepDialog(const std::string& db_path, QWidget* parent = nullptr,
                       const QString& cli = {});
  ~SweepDialog() override;

  /// Replaces the spec text; relative paths in it are taken from `base_dir`.
  void set_spec(const QString& json, const QString& base_dir);
  /// Checks the spec; true if it can run (the status label says why not).
  bool validate();
  /// Starts the sweep (local), or writes / submits its Slurm scripts; false
  /// (with the reason in the status label) if it cannot.
  bool start();
  /// Asks a running sweep to stop (its workers finish their current step).
  void stop();
  bool running() const;

  QPlainTextEdit* spec_edit() const { return spec_; }
  QSpinBox* workers_box() const { return workers_; }
  QLabel* status_label() const { return status_; }
  QPlainTextEdit* log_view() const { return log_; }
  QPushButton* start_button() const { return start_; }
  QPushButton* stop_button() const { return stop_; }
  /// Local workers (0) or a Slurm job array (1).
  QComboBox* mode_box() const { return mode_; }
  QLineEdit* partition_edit() const { return partition_; }
  QLineEdit* time_edit() const { return time_; }
  QSpinBox* max_parallel_box() const { return max_parallel_; }
  QSpinBox* task_threads_box() const { return task_threads_; }
  QLineEdit* shared_edit() const { return shared_; }
  QLineEdit* local_dir_edit() const { return local_dir_; }
  QCheckBox* dry_run_box() const { return dry_run_; }

 signals:
  /// The sweep process ended (exit code: 0 = every trial done).
  void sweep_finished(int exit_code);
  /// A Slurm sweep was submitted (recorded in the store as 'submitted').
  void sweep_submitted(qint64 sweep_id);

 private:
  void load_file();
  void update_buttons();
  bool slurm_mode() const;
  bool submit_slurm();

  std::string db_path_;
  QString cli_;
  QString base_dir_;
  QString resolved_;  // the checked spec with absolute paths, as written for the CLI
  QPlainTextEdit* spec_;
  QSpinBox* workers_;
  QComboBox* mode_;
  QFormLayout* form_;
  QLineEdit *partition_, *time_, *shared_, *local_dir_;
  QSpinBox *max_parallel_, *task_threads_;
  QCheckBox* dry_run_;
  QLabel* status_;
  QPlainTextEdit* log_;
  QPushButton *load_, *start_, *stop_;
  QProcess* process_;
};

}  // namespace bl
