// Training form and run controls: dataset, the TrainConfig fields a researcher
// tunes, run name and tags, and Start / Pause / Step / Resume / Stop with the
// enabled states of each run state. Start needs a valid configuration; the
// reasons it is disabled are listed under the buttons.
#pragma once

#include <QString>
#include <QStringList>
#include <QWidget>
#include <string>
#include <vector>

#include "train/train_config.h"

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;

namespace bl {

class TrainingPanel : public QWidget {
  Q_OBJECT

 public:
  enum class State { kIdle, kRunning, kPaused };

  explicit TrainingPanel(QWidget* parent = nullptr);

  /// Shows `t`'s fields (without emitting changed()).
  void set_config(const TrainConfig& t);
  /// Writes the edited fields into `t` (fields without a widget are kept).
  void apply_to(TrainConfig& t) const;
  QString data_path() const;
  void set_data_path(const QString& path);
  /// Run name for the store ("" = the preset name) and its tags.
  QString run_name() const;
  void set_run_name(const QString& name);
  std::vector<std::string> tags() const;
  /// Enables the buttons and fields for `s`; Start also needs a valid config.
  void set_state(State s, bool config_valid);
  State state() const { return state_; }
  void set_status(const QString& text);
  /// Shows why the configuration cannot be trained (empty list hides it).
  void set_errors(const std::vector<std::string>& errors);

  QLineEdit* data_edit() const { return data_; }
  QComboBox* optimizer_box() const { return optimizer_; }
  QComboBox* schedule_box() const { return schedule_; }
  QSpinBox* max_steps_box() const { return max_steps_; }
  QSpinBox* warmup_box() const { return warmup_; }
  QSpinBox* batch_size_box() const { return batch_size_; }
  QSpinBox* seq_len_box() const { return seq_len_; }
  QSpinBox* accum_box() const { return accum_; }
  QSpinBox* eval_interval_box() const { return eval_interval_; }
  QSpinBox* seed_box() const { return seed_; }
  QSpinBox* threads_box() const { return threads_; }
  QDoubleSpinBox* lr_box() const { return lr_; }
  QDoubleSpinBox* clip_box() const { return clip_; }
  QDoubleSpinBox* weight_decay_box() const { return weight_decay_; }
  QPushButton* start_button() const { return start_; }
  QPushButton* pause_button() const { return pause_; }
  QPushButton* step_button() const { return step_; }
  QPushButton* resume_button() const { return resume_; }
  QPushButton* stop_button() const { return stop_; }
  QLabel* status_label() const { return status_; }
  QLabel* errors_label() const { return errors_; }

 signals:
  void changed();
  void start_requested();
  void pause_requested();
  void step_requested();
  void resume_requested();
  void stop_requested();

 private:
  QList<QWidget*> fields() const;

  QLineEdit* data_;
  QPushButton* browse_;
  QLineEdit* name_;
  QLineEdit* tags_;
  QComboBox* optimizer_;
  QComboBox* schedule_;
  QDoubleSpinBox* lr_;
  QDoubleSpinBox* weight_decay_;
  QSpinBox* warmup_;
  QSpinBox* max_steps_;
  QSpinBox* batch_size_;
  QSpinBox* seq_len_;
  QSpinBox* accum_;
  QDoubleSpinBox* clip_;
  QSpinBox* eval_interval_;
  QSpinBox* seed_;
  QSpinBox* threads_;
  QPushButton *start_, *pause_, *step_, *resume_, *stop_;
  QLabel* status_;
  QLabel* errors_;
  State state_ = State::kIdle;
};

}  // namespace bl
