// The workbench's Sweep dialog: edit or load a sweep spec (the JSON of
// `blocklab-cli sweep`, engine/sweep/sweep_spec.h), see it checked as you type
// (trial count, or the error naming the field), and run it as a local sweep
// in N worker processes. The sweep runs as a `blocklab-cli sweep` child
// process (QProcess), so the window never waits on it, and a sweep keeps its
// resumability: closing the workbench stops it cleanly and running the same
// spec again continues it. Its runs appear in the Runs tab as they start.
#pragma once

#include <QDialog>
#include <QString>
#include <string>

class QLabel;
class QPlainTextEdit;
class QProcess;
class QPushButton;
class QSpinBox;

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
  /// Starts the sweep; false (with the reason in the status label) if it cannot.
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

 signals:
  /// The sweep process ended (exit code: 0 = every trial done).
  void sweep_finished(int exit_code);

 private:
  void load_file();
  void update_buttons();

  std::string db_path_;
  QString cli_;
  QString base_dir_;
  QString resolved_;  // the checked spec with absolute paths, as written for the CLI
  QPlainTextEdit* spec_;
  QSpinBox* workers_;
  QLabel* status_;
  QPlainTextEdit* log_;
  QPushButton *load_, *start_, *stop_;
  QProcess* process_;
};

}  // namespace bl
