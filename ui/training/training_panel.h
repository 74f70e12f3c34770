// Training form and run controls: dataset, the TrainConfig fields a researcher
// tunes, run name and tags, and Start / Pause / Step / Resume / Stop with the
// enabled states of each run state. Start needs a valid configuration; the
// reasons it is disabled are listed under the buttons.
#pragma once

#include <QString>
#include <QStringList>
#include <QWidget>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "lora/finetune.h"
#include "train/grpo.h"
#include "train/train_config.h"

class QCheckBox;
class QComboBox;
class QGroupBox;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QLineEdit;
class QPushButton;
class QSpinBox;

namespace bl {

/// A stored run that can be fine-tuned: its newest checkpoint's model.
struct FinetuneBase {
  int64_t run_id = 0;
  QString label;  // "#3 gpt-tiny"
  ModelConfig model;
};

/// "trainable 12.3 K of 0.82 M (1.50%)".
QString trainable_text(const FinetuneCounts& c);

class TrainingPanel : public QWidget {
  Q_OBJECT

 public:
  // kStopping: Stop was pressed; the run finishes its step, final evaluation
  // and checkpoint, with every button disabled meanwhile.
  enum class State { kIdle, kRunning, kPaused, kStopping };

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
  /// Progress of the run: `done` of `total` steps and the estimated time left
  /// (seconds, < 0 = unknown); total 0 hides the bar.
  void set_progress(int64_t done, int64_t total, double eta_s);
  /// Shows why the configuration cannot be trained (empty list hides it).
  void set_errors(const std::vector<std::string>& errors);

  /// The run's tokenizer as RunSpec::tokenizer spells it: "char", "byte" or
  /// "bpe:DIR" ("bpe:" with no folder chosen yet).
  std::string tokenizer_spec() const;
  /// Selects "char", "byte" or "bpe:DIR" (the folder goes into the field).
  void set_tokenizer_spec(const std::string& spec);

  QLineEdit* data_edit() const { return data_; }
  QComboBox* tokenizer_box() const { return tokenizer_; }
  QLineEdit* bpe_dir_edit() const { return bpe_dir_; }
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
  // Fine-tune (LoRA / QLoRA): the base run's checkpoint replaces the composer's model.
  /// Runs offered as bases (keeps the selected one when it is still listed).
  void set_finetune_bases(std::vector<FinetuneBase> bases);
  bool finetune_enabled() const;
  void set_finetune_enabled(bool on);
  /// The selected base (nullptr if none).
  const FinetuneBase* finetune_base() const;
  bool select_finetune_base(int64_t run_id);
  LoraSpec lora_spec() const;
  std::string quantize() const;  // "" = float base
  /// Counts of the current settings on the selected base (engine's count_finetune).
  const std::optional<FinetuneCounts>& finetune_counts() const { return counts_; }
  /// Why the fine-tune settings cannot be trained (empty when off or valid).
  const std::vector<std::string>& finetune_errors() const { return finetune_errors_; }

  // Distillation: a stored run's newest checkpoint as the teacher of a fresh
  // student (RunKind::kDistill); the teachers offered are the fine-tune bases.
  bool distill_enabled() const;
  void set_distill_enabled(bool on);
  /// The selected teacher (nullptr if none).
  const FinetuneBase* distill_teacher() const;
  bool select_distill_teacher(int64_t run_id);
  double distill_temperature() const;
  double distill_alpha() const;
  QGroupBox* distill_group() const { return distill_group_; }
  QComboBox* teacher_box() const { return teacher_; }
  QDoubleSpinBox* distill_temperature_box() const { return distill_t_; }
  QDoubleSpinBox* distill_alpha_box() const { return distill_alpha_; }

  // Preference tuning (DPO): a stored run's newest checkpoint is the model
  // tuned and its reference (RunKind::kPreference); the data file holds the
  // pairs. The runs offered are the fine-tune bases.
  bool dpo_enabled() const;
  void set_dpo_enabled(bool on);
  const FinetuneBase* dpo_reference() const;
  bool select_dpo_reference(int64_t run_id);
  double dpo_beta() const;
  QGroupBox* dpo_group() const { return dpo_group_; }
  QComboBox* dpo_reference_box() const { return dpo_reference_; }
  QDoubleSpinBox* dpo_beta_box() const { return dpo_beta_; }

  // GRPO: a stored run's newest checkpoint is the model tuned and its KL
  // reference (RunKind::kGrpo); the data file holds the prompts.
  bool grpo_enabled() const;
  void set_grpo_enabled(bool on);
  const FinetuneBase* grpo_model() const;
  bool select_grpo_model(int64_t run_id);
  std::string grpo_reward() const;
  GrpoOptions grpo_options() const;  // group, max new tokens, beta (the rest default)
  QGroupBox* grpo_group() const { return grpo_group_; }
  QLineEdit* grpo_reward_edit() const { return grpo_reward_; }
  QSpinBox* grpo_group_size_box() const { return grpo_group_size_; }
  QSpinBox* grpo_new_tokens_box() const { return grpo_new_tokens_; }

  QGroupBox* finetune_group() const { return lora_group_; }
  QComboBox* base_box() const { return base_; }
  QSpinBox* rank_box() const { return rank_; }
  QDoubleSpinBox* alpha_box() const { return alpha_; }
  QCheckBox* target_box(const QString& role) const;
  QComboBox* quantize_box() const { return quant_; }
  QLabel* trainable_label() const { return trainable_; }

  QPushButton* start_button() const { return start_; }
  QPushButton* pause_button() const { return pause_; }
  QPushButton* step_button() const { return step_; }
  QPushButton* resume_button() const { return resume_; }
  QPushButton* stop_button() const { return stop_; }
  QLabel* status_label() const { return status_; }
  QProgressBar* progress_bar() const { return progress_; }
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
  /// The stored run chosen in one of the run choosers (bases_ order), or null.
  const FinetuneBase* base_in(const QComboBox* box) const;
  static bool select_in(QComboBox* box, int64_t run_id);
  void update_finetune();  // recounts, refreshes the label and errors

  QLineEdit* data_;
  QComboBox* tokenizer_;  // char | byte | bpe (data: the spec's kind)
  QWidget* bpe_row_;      // shown for bpe only
  QLineEdit* bpe_dir_;    // a `tokenizer train` folder (or its tokenizer.json)
  QPushButton* browse_bpe_;
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
  QDoubleSpinBox* time_budget_;  // seconds
  QDoubleSpinBox* flop_budget_;  // TFLOP
  QSpinBox* eval_interval_;
  QSpinBox* seed_;
  QSpinBox* threads_;
  QGroupBox* lora_group_;
  QComboBox* base_;
  QSpinBox* rank_;
  QDoubleSpinBox* alpha_;
  std::vector<QCheckBox*> targets_;
  QComboBox* quant_;
  QLabel* trainable_;
  QGroupBox* distill_group_;
  QComboBox* teacher_;
  QDoubleSpinBox* distill_t_;
  QDoubleSpinBox* distill_alpha_;
  QGroupBox* dpo_group_;
  QComboBox* dpo_reference_;
  QDoubleSpinBox* dpo_beta_;
  QGroupBox* grpo_group_;
  QComboBox* grpo_model_;
  QLineEdit* grpo_reward_;
  QSpinBox* grpo_group_size_;
  QSpinBox* grpo_new_tokens_;
  QDoubleSpinBox* grpo_beta_;
  std::vector<FinetuneBase> bases_;
  std::optional<FinetuneCounts> counts_;
  std::vector<std::string> finetune_errors_;
  QPushButton *start_, *pause_, *step_, *resume_, *stop_;
  QLabel* status_;
  QProgressBar* progress_;
  QLabel* errors_;
  State state_ = State::kIdle;
};

}  // namespace bl
