#include "training/training_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QThread>
#include <QVBoxLayout>
#include <algorithm>

#include "arch/error_groups.h"
#include "lora/lora.h"

namespace bl {

namespace {
QSpinBox* spin(const char* name, int lo, int hi, const char* tip) {
  auto* s = new QSpinBox;
  s->setObjectName(name);
  s->setRange(lo, hi);
  s->setKeyboardTracking(false);
  s->setToolTip(tip);
  return s;
}
QDoubleSpinBox* dspin(const char* name, double lo, double hi, int decimals, double step,
                      const char* tip) {
  auto* s = new QDoubleSpinBox;
  s->setObjectName(name);
  s->setDecimals(decimals);
  s->setRange(lo, hi);
  s->setSingleStep(step);
  s->setKeyboardTracking(false);
  s->setToolTip(tip);
  return s;
}
QComboBox* combo(const char* name, const std::vector<std::string>& items) {
  auto* c = new QComboBox;
  c->setObjectName(name);
  for (const std::string& s : items) c->addItem(QString::fromStdString(s));
  return c;
}
QPushButton* button(const char* text, const char* name, const char* tip) {
  auto* b = new QPushButton(text);
  b->setObjectName(name);
  b->setToolTip(tip);
  return b;
}
/// 12345 -> "12.3 K", 823000 -> "0.82 M".
QString count_text(int64_t n) {
  if (n >= 100'000) return QString::number(double(n) / 1e6, 'f', 2) + " M";
  if (n >= 1'000) return QString::number(double(n) / 1e3, 'f', 1) + " K";
  return QString::number(n);
}
}  // namespace

QString trainable_text(const FinetuneCounts& c) {
  return QString("trainable %1 of %2 (%3%)")
      .arg(count_text(c.trainable), count_text(c.total))
      .arg(100.0 * double(c.trainable) / double(std::max<int64_t>(c.total, 1)), 0, 'f', 2);
}

TrainingPanel::TrainingPanel(QWidget* parent) : QWidget(parent) {
  data_ = new QLineEdit;
  data_->setObjectName("data_path");
  data_->setToolTip("UTF-8 text corpus");
  browse_ = new QPushButton("…");
  browse_->setObjectName("browse_data");
  browse_->setToolTip("Choose a UTF-8 text corpus");
  browse_->setMaximumWidth(32);
  auto* data_row = new QHBoxLayout;
  data_row->setContentsMargins(0, 0, 0, 0);
  data_row->addWidget(data_, 1);
  data_row->addWidget(browse_);
  tokenizer_ = new QComboBox;
  tokenizer_->setObjectName("tokenizer");
  tokenizer_->addItem("characters of the corpus", "char");
  tokenizer_->addItem("bytes (256 tokens)", "byte");
  tokenizer_->addItem("byte-level BPE (folder)", "bpe");
  tokenizer_->setToolTip(
      "How the corpus becomes tokens (the model's vocab_size follows it):\n"
      "characters: one token per character of the corpus;\n"
      "bytes: 256 tokens, any text;\n"
      "byte-level BPE: a tokenizer.json made by `blocklab-cli tokenizer train`\n"
      "or a GPT-2-style Hugging Face one.\n"
      "A fine-tune or distillation reads the corpus with its base's / teacher's tokenizer.");
  bpe_dir_ = new QLineEdit;
  bpe_dir_->setObjectName("bpe_dir");
  bpe_dir_->setPlaceholderText("folder with tokenizer.json");
  browse_bpe_ = new QPushButton("…");
  browse_bpe_->setObjectName("browse_bpe");
  browse_bpe_->setToolTip("Choose a tokenizer folder");
  browse_bpe_->setMaximumWidth(32);
  bpe_row_ = new QWidget;
  auto* bpe_layout = new QHBoxLayout(bpe_row_);
  bpe_layout->setContentsMargins(0, 0, 0, 0);
  bpe_layout->addWidget(bpe_dir_, 1);
  bpe_layout->addWidget(browse_bpe_);
  bpe_row_->setVisible(false);
  name_ = new QLineEdit;
  name_->setObjectName("run_name");
  name_->setPlaceholderText("preset name");
  tags_ = new QLineEdit;
  tags_->setObjectName("run_tags");
  tags_->setPlaceholderText("comma,separated");

  optimizer_ = combo("optimizer", known_optimizers());
  schedule_ = combo("lr_schedule", known_lr_schedules());
  lr_ = dspin("learning_rate", 1e-6, 10.0, 6, 1e-4, "Peak learning rate");
  weight_decay_ = dspin("weight_decay", 0, 10, 4, 0.01, "Decoupled weight decay (>= 2-D tensors)");
  warmup_ = spin("warmup_steps", 0, 10'000'000, "Linear warmup steps");
  max_steps_ = spin("max_steps", 1, 10'000'000, "Optimizer steps (also the schedule horizon)");
  batch_size_ = spin("batch_size", 1, 4096, "Sequences per micro-batch");
  seq_len_ = spin("seq_len", 1, 65536, "Tokens per training window (<= the model's max_seq_len)");
  accum_ = spin("grad_accumulation_steps", 1, 4096, "Micro-batches per optimizer step");
  clip_ = dspin("max_grad_norm", 0, 1e6, 3, 0.1, "Global gradient-norm clip; 0 disables");
  eval_interval_ = spin("eval_interval", 0, 10'000'000, "Steps between evaluations; 0 = at end");
  seed_ = spin("seed", 0, 2'000'000'000, "Seed of init, batch order and dropout");
  threads_ = spin("threads", 0, 256, "Engine threads; 0 = all cores");
  threads_->setSpecialValueText(QString("all (%1)").arg(QThread::idealThreadCount()));
  time_budget_ = dspin("time_budget_s", 0, 1e9, 0, 60,
                       "Wall-clock budget for training and the final evaluation, in seconds;\n"
                       "0 = none. No step starts unless it and the final evaluation still fit;\n"
                       "the run is recorded completed with the reason, and can be resumed.");
  time_budget_->setSuffix(" s");
  time_budget_->setSpecialValueText("none");
  flop_budget_ = dspin("flop_budget", 0, 1e9, 3, 1,
                       "Compute budget in TFLOP (10^12 training FLOPs, the engine's count); 0 = "
                       "none.\nThe run ends after the last step that fits, and the lr schedule "
                       "ends there too:\nmodels of different cost at one budget each complete "
                       "their schedule.");
  flop_budget_->setSuffix(" TFLOP");
  flop_budget_->setSpecialValueText("none");
  // Their maxima are long numbers: sized by the form, not by the widest value,
  // so the dock does not widen.
  for (QDoubleSpinBox* s : {time_budget_, flop_budget_}) {
    s->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
    s->setMinimumWidth(80);
  }

  // Two columns keep the form short enough for a side dock.
  auto* grid = new QGridLayout;
  grid->setContentsMargins(0, 0, 0, 0);
  grid->setHorizontalSpacing(6);
  grid->setVerticalSpacing(4);
  auto add = [&](int row, int col, const char* label, QWidget* w) {
    auto* l = new QLabel(label);
    l->setBuddy(w);
    grid->addWidget(l, row, col * 2, Qt::AlignRight);
    grid->addWidget(w, row, col * 2 + 1);
  };
  add(0, 0, "optimizer", optimizer_);
  add(0, 1, "schedule", schedule_);
  add(1, 0, "lr", lr_);
  add(1, 1, "warmup", warmup_);
  add(2, 0, "steps", max_steps_);
  add(2, 1, "decay", weight_decay_);
  add(3, 0, "batch", batch_size_);
  add(3, 1, "seq_len", seq_len_);
  add(4, 0, "accum", accum_);
  add(4, 1, "clip", clip_);
  add(5, 0, "eval every", eval_interval_);
  add(5, 1, "seed", seed_);
  add(6, 0, "threads", threads_);
  add(6, 1, "time budget", time_budget_);
  add(7, 0, "FLOP budget", flop_budget_);
  grid->setColumnStretch(1, 1);
  grid->setColumnStretch(3, 1);

  auto* top = new QFormLayout;
  top->setContentsMargins(0, 0, 0, 0);
  top->addRow("dataset", data_row);
  top->addRow("tokenizer", tokenizer_);
  top->addRow("", bpe_row_);
  top->addRow("run name", name_);
  top->addRow("tags", tags_);

  // Fine-tune (LoRA / QLoRA) of a stored run.
  lora_group_ = new QGroupBox("Fine-tune (LoRA)");
  lora_group_->setObjectName("finetune");
  lora_group_->setCheckable(true);
  lora_group_->setChecked(false);
  lora_group_->setToolTip(
      "Train LoRA adapters on a stored run's newest checkpoint (QLoRA with a quantized base).\n"
      "When enabled the model and tokenizer come from the base checkpoint: the composer's\n"
      "architecture and the preset are ignored; the training settings above apply.\n"
      "The adapter is saved as a PEFT directory next to the run's files.");
  base_ = new QComboBox;
  base_->setObjectName("finetune_base");
  base_->setToolTip("Stored run with a checkpoint; its newest checkpoint is the base model");
  base_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  base_->setMinimumContentsLength(12);
  rank_ = spin("lora_rank", 1, 4096, "Adapter rank r (A is r x in, B is out x r)");
  rank_->setValue(8);
  alpha_ =
      dspin("lora_alpha", 0.01, 100000, 2, 1, "Adapter scale alpha (the update is alpha/r BA)");
  alpha_->setValue(16);
  quant_ = combo("quantize", {"none", "nf4", "affine4", "affine8"});
  quant_->setToolTip("Quantize the frozen base (QLoRA): NF4 or affine 4/8-bit, group size 64");
  auto* target_row = new QHBoxLayout;
  target_row->setContentsMargins(0, 0, 0, 0);
  target_row->setSpacing(4);
  for (const auto& [role, linear] : lora_roles()) {
    auto* c = new QCheckBox(QString::fromStdString(role));
    c->setObjectName(QString::fromStdString("target_" + role));
    c->setToolTip(QString::fromStdString("Adapt every " + linear + " layer"));
    c->setChecked(role == "q" || role == "v");  // PEFT's default for Llama
    targets_.push_back(c);
    target_row->addWidget(c);
  }
  target_row->addStretch(1);
  trainable_ = new QLabel;
  trainable_->setObjectName("trainable");
  trainable_->setWordWrap(true);
  auto* lg = new QGridLayout(lora_group_);
  lg->setContentsMargins(6, 4, 6, 4);
  lg->setHorizontalSpacing(6);
  lg->setVerticalSpacing(4);
  auto lora_label = [](const char* text, QWidget* buddy) {
    auto* l = new QLabel(text);
    l->setBuddy(buddy);
    return l;
  };
  lg->addWidget(lora_label("base", base_), 0, 0, Qt::AlignRight);
  lg->addWidget(base_, 0, 1, 1, 3);
  lg->addWidget(lora_label("rank", rank_), 1, 0, Qt::AlignRight);
  lg->addWidget(rank_, 1, 1);
  lg->addWidget(lora_label("alpha", alpha_), 1, 2, Qt::AlignRight);
  lg->addWidget(alpha_, 1, 3);
  lg->addWidget(new QLabel("targets"), 2, 0, Qt::AlignRight);
  lg->addLayout(target_row, 2, 1, 1, 3);
  lg->addWidget(lora_label("quantize", quant_), 3, 0, Qt::AlignRight);
  lg->addWidget(quant_, 3, 1);
  lg->addWidget(trainable_, 4, 0, 1, 4);
  lg->setColumnStretch(1, 1);
  lg->setColumnStretch(3, 1);

  // Distillation of a stored run into the composer's model.
  distill_group_ = new QGroupBox("Distill from");
  distill_group_->setObjectName("distill");
  distill_group_->setCheckable(true);
  distill_group_->setChecked(false);
  distill_group_->setToolTip(
      "Train the composer's model (a fresh student) on a stored run's predictions:\n"
      "alpha x cross-entropy + (1 - alpha) x T^2 x KL(teacher || student) at temperature T.\n"
      "The student reads the corpus with the teacher's tokenizer.");
  teacher_ = new QComboBox;
  teacher_->setObjectName("distill_teacher");
  teacher_->setToolTip("Stored run with a checkpoint; its newest checkpoint is the teacher");
  teacher_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  teacher_->setMinimumContentsLength(12);
  distill_t_ = dspin("distill_temperature", 0.05, 100, 2, 0.5,
                     "Temperature T > 0 that softens both distributions (default 2)");
  distill_t_->setValue(2.0);
  distill_alpha_ = dspin("distill_alpha", 0, 1, 2, 0.05,
                         "Share of the hard-label cross-entropy, in [0, 1] (default 0.5)");
  distill_alpha_->setValue(0.5);
  auto* dg = new QGridLayout(distill_group_);
  dg->setContentsMargins(6, 4, 6, 4);
  dg->setHorizontalSpacing(6);
  dg->setVerticalSpacing(4);
  dg->addWidget(lora_label("teacher", teacher_), 0, 0, Qt::AlignRight);
  dg->addWidget(teacher_, 0, 1, 1, 3);
  dg->addWidget(lora_label("temperature", distill_t_), 1, 0, Qt::AlignRight);
  dg->addWidget(distill_t_, 1, 1);
  dg->addWidget(lora_label("alpha", distill_alpha_), 1, 2, Qt::AlignRight);
  dg->addWidget(distill_alpha_, 1, 3);
  dg->setColumnStretch(1, 1);
  dg->setColumnStretch(3, 1);

  // Preference tuning (DPO) of a stored run on pairs from the data file.
  dpo_group_ = new QGroupBox("Preference tuning (DPO)");
  dpo_group_->setObjectName("dpo");
  dpo_group_->setCheckable(true);
  dpo_group_->setChecked(false);
  dpo_group_->setToolTip(
      "Train a stored run's model to prefer the chosen over the rejected completion of each\n"
      "pair, relative to its own starting point (DPO). The data file is JSONL, one\n"
      "{\"prompt\", \"chosen\", \"rejected\"} object per line. Model and tokenizer are the\n"
      "run's; the training settings are this panel's (DPO usually wants a learning rate\n"
      "about ten times lower than pretraining).");
  dpo_reference_ = new QComboBox;
  dpo_reference_->setObjectName("dpo_reference");
  dpo_reference_->setToolTip(
      "Stored run with a checkpoint: the model tuned, and the frozen reference it is compared "
      "with");
  dpo_reference_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  dpo_reference_->setMinimumContentsLength(12);
  dpo_beta_ = dspin("dpo_beta", 0.001, 100, 3, 0.05,
                    "beta > 0: how strongly the policy is held to the reference (default 0.1)");
  dpo_beta_->setValue(0.1);
  auto* pg = new QGridLayout(dpo_group_);
  pg->setContentsMargins(6, 4, 6, 4);
  pg->setHorizontalSpacing(6);
  pg->setVerticalSpacing(4);
  pg->addWidget(lora_label("model", dpo_reference_), 0, 0, Qt::AlignRight);
  pg->addWidget(dpo_reference_, 0, 1, 1, 3);
  pg->addWidget(lora_label("beta", dpo_beta_), 1, 0, Qt::AlignRight);
  pg->addWidget(dpo_beta_, 1, 1);
  auto* pairs_note = new QLabel("data: JSONL pairs");
  pairs_note->setToolTip(dpo_group_->toolTip());
  pg->addWidget(pairs_note, 1, 2, 1, 2);
  pg->setColumnStretch(1, 1);
  pg->setColumnStretch(3, 1);

  // GRPO of a stored run on prompts from the data file, with a reward.
  grpo_group_ = new QGroupBox("Reinforcement (GRPO)");
  grpo_group_->setObjectName("grpo");
  grpo_group_->setCheckable(true);
  grpo_group_->setChecked(false);
  grpo_group_->setToolTip(
      "Train a stored run's model on the rewards of its own sampled completions (GRPO):\n"
      "a group of completions per prompt, rewards normalised within the group, a KL\n"
      "penalty to the starting model. The data file is JSONL, one {\"prompt\", \"target\"}\n"
      "object per line. Rewards: exact (the completion's first line equals the target),\n"
      "regex:PATTERN, length:N, cmd:COMMAND (prints the reward; the completion on stdin).");
  grpo_model_ = new QComboBox;
  grpo_model_->setObjectName("grpo_model");
  grpo_model_->setToolTip("Stored run with a checkpoint: the model tuned and its KL reference");
  grpo_model_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  grpo_model_->setMinimumContentsLength(12);
  grpo_reward_ = new QLineEdit("exact");
  grpo_reward_->setObjectName("grpo_reward");
  grpo_reward_->setToolTip("exact | regex:PATTERN | length:N | cmd:COMMAND");
  grpo_group_size_ = spin("grpo_group_size", 2, 256, "Completions sampled per prompt (G >= 2)");
  grpo_group_size_->setValue(4);
  grpo_new_tokens_ = spin("grpo_max_new_tokens", 1, 4096, "Tokens per sampled completion, at most");
  grpo_new_tokens_->setValue(32);
  grpo_beta_ = dspin("grpo_beta", 0, 100, 3, 0.01, "KL weight beta >= 0 (default 0.04)");
  grpo_beta_->setValue(0.04);
  auto* gg = new QGridLayout(grpo_group_);
  gg->setContentsMargins(6, 4, 6, 4);
  gg->setHorizontalSpacing(6);
  gg->setVerticalSpacing(4);
  gg->addWidget(lora_label("model", grpo_model_), 0, 0, Qt::AlignRight);
  gg->addWidget(grpo_model_, 0, 1, 1, 3);
  gg->addWidget(lora_label("reward", grpo_reward_), 1, 0, Qt::AlignRight);
  gg->addWidget(grpo_reward_, 1, 1, 1, 3);
  gg->addWidget(lora_label("group", grpo_group_size_), 2, 0, Qt::AlignRight);
  gg->addWidget(grpo_group_size_, 2, 1);
  gg->addWidget(lora_label("tokens", grpo_new_tokens_), 2, 2, Qt::AlignRight);
  gg->addWidget(grpo_new_tokens_, 2, 3);
  gg->addWidget(lora_label("beta", grpo_beta_), 3, 0, Qt::AlignRight);
  gg->addWidget(grpo_beta_, 3, 1);
  gg->setColumnStretch(1, 1);
  gg->setColumnStretch(3, 1);

  start_ = button("Start", "start", "Train a new run with this configuration");
  pause_ = button("Pause", "pause", "Hold after the current step");
  step_ = button("Step", "step", "While paused: run exactly one more step");
  resume_ = button("Resume", "resume", "Continue a paused run");
  stop_ = button("Stop", "stop", "End the run after the current step (recorded as stopped)");
  auto* buttons = new QHBoxLayout;
  buttons->setSpacing(4);
  for (QPushButton* b : {start_, pause_, step_, resume_, stop_}) buttons->addWidget(b);
  progress_ = new QProgressBar;
  progress_->setObjectName("progress");
  progress_->setTextVisible(true);
  progress_->hide();
  status_ = new QLabel("Ready");
  status_->setObjectName("status");
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  errors_ = new QLabel;
  errors_->setObjectName("errors");
  errors_->setWordWrap(true);
  errors_->setStyleSheet("color: #b00020;");
  // A long unbreakable message ("block_configs[0–10].d_model") must not widen
  // the dock until the composer's forms are clipped: wrap within the given width.
  errors_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  errors_->setMinimumWidth(1);
  errors_->hide();

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  layout->addLayout(top);
  layout->addLayout(grid);
  layout->addWidget(lora_group_);
  layout->addWidget(distill_group_);
  layout->addWidget(dpo_group_);
  layout->addWidget(grpo_group_);
  layout->addLayout(buttons);
  layout->addWidget(errors_);
  layout->addWidget(progress_);
  layout->addWidget(status_);
  layout->addStretch(1);

  connect(data_, &QLineEdit::editingFinished, this, &TrainingPanel::changed);
  for (QSpinBox* s :
       {warmup_, max_steps_, batch_size_, seq_len_, accum_, eval_interval_, seed_, threads_})
    connect(s, &QSpinBox::valueChanged, this, &TrainingPanel::changed);
  for (QDoubleSpinBox* s : {lr_, weight_decay_, clip_, time_budget_, flop_budget_})
    connect(s, &QDoubleSpinBox::valueChanged, this, &TrainingPanel::changed);
  for (QComboBox* c : {optimizer_, schedule_})
    connect(c, &QComboBox::currentTextChanged, this, &TrainingPanel::changed);
  auto lora_changed = [this] {
    update_finetune();
    emit changed();
  };
  connect(lora_group_, &QGroupBox::toggled, this, lora_changed);
  // A run is one kind: a fine-tune, a distillation, a DPO or a GRPO run. An
  // unchecked box shows its title only, so the panel stays short enough for
  // Start to be in view on a laptop screen.
  auto fold = [](QGroupBox* box, bool open) {
    for (QWidget* w : box->findChildren<QWidget*>(Qt::FindDirectChildrenOnly)) w->setVisible(open);
  };
  for (QGroupBox* kind : {lora_group_, distill_group_, dpo_group_, grpo_group_}) {
    fold(kind, false);
    connect(kind, &QGroupBox::toggled, this, [kind, fold](bool on) { fold(kind, on); });
  }
  for (QGroupBox* kind : {lora_group_, distill_group_, dpo_group_, grpo_group_})
    connect(kind, &QGroupBox::toggled, this, [this, kind](bool on) {
      if (on)
        for (QGroupBox* other : {lora_group_, distill_group_, dpo_group_, grpo_group_})
          if (other != kind) other->setChecked(false);
      if (kind != lora_group_) emit changed();  // the fine-tune box reports through lora_changed
    });
  connect(dpo_reference_, &QComboBox::currentIndexChanged, this, &TrainingPanel::changed);
  connect(dpo_beta_, &QDoubleSpinBox::valueChanged, this, &TrainingPanel::changed);
  connect(grpo_model_, &QComboBox::currentIndexChanged, this, &TrainingPanel::changed);
  connect(grpo_reward_, &QLineEdit::textChanged, this, &TrainingPanel::changed);
  for (QSpinBox* b : {grpo_group_size_, grpo_new_tokens_})
    connect(b, &QSpinBox::valueChanged, this, &TrainingPanel::changed);
  connect(grpo_beta_, &QDoubleSpinBox::valueChanged, this, &TrainingPanel::changed);
  connect(teacher_, &QComboBox::currentIndexChanged, this, &TrainingPanel::changed);
  for (QDoubleSpinBox* s : {distill_t_, distill_alpha_})
    connect(s, &QDoubleSpinBox::valueChanged, this, &TrainingPanel::changed);
  connect(base_, &QComboBox::currentIndexChanged, this, lora_changed);
  connect(rank_, &QSpinBox::valueChanged, this, lora_changed);
  connect(alpha_, &QDoubleSpinBox::valueChanged, this, lora_changed);
  connect(quant_, &QComboBox::currentIndexChanged, this, lora_changed);
  for (QCheckBox* c : targets_) connect(c, &QCheckBox::toggled, this, lora_changed);
  connect(browse_, &QPushButton::clicked, this, [this] {
    const QString f =
        QFileDialog::getOpenFileName(this, "Training corpus", data_->text(),
                                     "Text (*.txt);;Pairs or prompts (*.jsonl);;All files (*)");
    if (!f.isEmpty()) {
      data_->setText(f);
      emit changed();
    }
  });
  connect(tokenizer_, &QComboBox::currentIndexChanged, this, [this] {
    bpe_row_->setVisible(tokenizer_->currentData().toString() == "bpe");
    emit changed();
  });
  connect(bpe_dir_, &QLineEdit::textChanged, this, &TrainingPanel::changed);
  connect(browse_bpe_, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, "Tokenizer folder", bpe_dir_->text());
    if (!d.isEmpty()) bpe_dir_->setText(d);
  });
  connect(start_, &QPushButton::clicked, this, &TrainingPanel::start_requested);
  connect(pause_, &QPushButton::clicked, this, &TrainingPanel::pause_requested);
  connect(step_, &QPushButton::clicked, this, &TrainingPanel::step_requested);
  connect(resume_, &QPushButton::clicked, this, &TrainingPanel::resume_requested);
  connect(stop_, &QPushButton::clicked, this, &TrainingPanel::stop_requested);
  set_state(State::kIdle, true);
  update_finetune();
}

QList<QWidget*> TrainingPanel::fields() const {
  return {data_,         browse_,     tokenizer_,   bpe_dir_,     browse_bpe_, name_,
          tags_,         optimizer_,  schedule_,    lr_,          warmup_,     max_steps_,
          weight_decay_, batch_size_, seq_len_,     accum_,       clip_,       eval_interval_,
          seed_,         threads_,    time_budget_, flop_budget_, lora_group_, distill_group_,
          dpo_group_,    grpo_group_};
}

void TrainingPanel::set_config(const TrainConfig& t) {
  std::vector<QSignalBlocker> blockers;
  blockers.reserve(size_t(fields().size()));
  for (QWidget* w : fields()) blockers.emplace_back(w);
  optimizer_->setCurrentText(QString::fromStdString(t.optimizer));
  schedule_->setCurrentText(QString::fromStdString(t.lr_schedule));
  lr_->setValue(t.learning_rate);
  weight_decay_->setValue(t.weight_decay);
  warmup_->setValue(int(t.warmup_steps));
  max_steps_->setValue(int(t.max_steps));
  batch_size_->setValue(int(t.batch_size));
  seq_len_->setValue(int(t.seq_len));
  accum_->setValue(int(t.grad_accumulation_steps));
  clip_->setValue(t.max_grad_norm);
  eval_interval_->setValue(int(t.eval_interval));
  seed_->setValue(int(t.seed));
  threads_->setValue(int(t.threads));
  time_budget_->setValue(t.time_budget_s);
  flop_budget_->setValue(t.flop_budget / 1e12);
}

void TrainingPanel::apply_to(TrainConfig& t) const {
  t.optimizer = optimizer_->currentText().toStdString();
  t.lr_schedule = schedule_->currentText().toStdString();
  t.learning_rate = lr_->value();
  t.weight_decay = weight_decay_->value();
  t.warmup_steps = warmup_->value();
  t.max_steps = max_steps_->value();
  t.batch_size = batch_size_->value();
  t.seq_len = seq_len_->value();
  t.grad_accumulation_steps = accum_->value();
  t.max_grad_norm = clip_->value();
  t.eval_interval = eval_interval_->value();
  t.seed = seed_->value();
  t.threads = threads_->value();
  t.time_budget_s = time_budget_->value();
  t.flop_budget = flop_budget_->value() * 1e12;
}

std::string TrainingPanel::tokenizer_spec() const {
  const std::string kind = tokenizer_->currentData().toString().toStdString();
  if (kind != "bpe") return kind;
  return "bpe:" + bpe_dir_->text().trimmed().toStdString();
}

void TrainingPanel::set_tokenizer_spec(const std::string& spec) {
  const std::string kind = spec.rfind("bpe:", 0) == 0 ? "bpe" : spec;
  const int i = tokenizer_->findData(QString::fromStdString(kind));
  if (i >= 0) tokenizer_->setCurrentIndex(i);
  if (kind == "bpe") bpe_dir_->setText(QString::fromStdString(spec.substr(4)));
}

QString TrainingPanel::data_path() const {
  return data_->text();
}

void TrainingPanel::set_data_path(const QString& path) {
  data_->setText(path);
}

QString TrainingPanel::run_name() const {
  return name_->text().trimmed();
}

void TrainingPanel::set_run_name(const QString& name) {
  name_->setText(name);
}

std::vector<std::string> TrainingPanel::tags() const {
  std::vector<std::string> out;
  for (const QString& t : tags_->text().split(',', Qt::SkipEmptyParts))
    if (!t.trimmed().isEmpty()) out.push_back(t.trimmed().toStdString());
  return out;
}

void TrainingPanel::set_state(State s, bool config_valid) {
  state_ = s;
  const bool idle = s == State::kIdle;
  start_->setEnabled(idle && config_valid);
  pause_->setEnabled(s == State::kRunning);
  // (kStopping: Start, Pause, Step, Resume and Stop all wait for the run to end.)
  step_->setEnabled(s == State::kPaused);
  resume_->setEnabled(s == State::kPaused);
  stop_->setEnabled(s == State::kRunning || s == State::kPaused);
  for (QWidget* w : fields()) w->setEnabled(idle);
}

void TrainingPanel::set_finetune_bases(std::vector<FinetuneBase> bases) {
  // Every run chooser offers the same stored runs; each keeps its choice.
  const std::vector<QComboBox*> boxes = {base_, teacher_, dpo_reference_, grpo_model_};
  std::vector<int64_t> keep;
  for (QComboBox* box : boxes) {
    const FinetuneBase* cur = base_in(box);
    keep.push_back(cur ? cur->run_id : 0);
  }
  bases_ = std::move(bases);
  for (size_t k = 0; k < boxes.size(); ++k) {
    QComboBox* box = boxes[k];
    const QSignalBlocker b(box);
    box->clear();
    for (const FinetuneBase& f : bases_) box->addItem(f.label, qlonglong(f.run_id));
    if (box->count() == 0) box->setPlaceholderText("no stored run has a checkpoint");
    const int idx = box->findData(qlonglong(keep[k]));
    box->setCurrentIndex(idx >= 0 ? idx : (bases_.empty() ? -1 : 0));
  }
  update_finetune();
}

const FinetuneBase* TrainingPanel::base_in(const QComboBox* box) const {
  const int i = box->currentIndex();
  return i >= 0 && size_t(i) < bases_.size() ? &bases_[size_t(i)] : nullptr;
}

bool TrainingPanel::select_in(QComboBox* box, int64_t run_id) {
  const int i = box->findData(qlonglong(run_id));
  if (i < 0) return false;
  box->setCurrentIndex(i);
  return true;
}

bool TrainingPanel::grpo_enabled() const {
  return grpo_group_->isChecked();
}

void TrainingPanel::set_grpo_enabled(bool on) {
  grpo_group_->setChecked(on);
}

const FinetuneBase* TrainingPanel::grpo_model() const {
  return base_in(grpo_model_);
}

bool TrainingPanel::select_grpo_model(int64_t run_id) {
  return select_in(grpo_model_, run_id);
}

std::string TrainingPanel::grpo_reward() const {
  return grpo_reward_->text().trimmed().toStdString();
}

GrpoOptions TrainingPanel::grpo_options() const {
  GrpoOptions g;
  g.group = grpo_group_size_->value();
  g.max_new_tokens = grpo_new_tokens_->value();
  g.beta = float(grpo_beta_->value());
  return g;
}

bool TrainingPanel::dpo_enabled() const {
  return dpo_group_->isChecked();
}

void TrainingPanel::set_dpo_enabled(bool on) {
  dpo_group_->setChecked(on);
}

const FinetuneBase* TrainingPanel::dpo_reference() const {
  return base_in(dpo_reference_);
}

bool TrainingPanel::select_dpo_reference(int64_t run_id) {
  return select_in(dpo_reference_, run_id);
}

double TrainingPanel::dpo_beta() const {
  return dpo_beta_->value();
}

bool TrainingPanel::distill_enabled() const {
  return distill_group_->isChecked();
}

void TrainingPanel::set_distill_enabled(bool on) {
  distill_group_->setChecked(on);
}

const FinetuneBase* TrainingPanel::distill_teacher() const {
  return base_in(teacher_);
}

bool TrainingPanel::select_distill_teacher(int64_t run_id) {
  return select_in(teacher_, run_id);
}

double TrainingPanel::distill_temperature() const {
  return distill_t_->value();
}

double TrainingPanel::distill_alpha() const {
  return distill_alpha_->value();
}

bool TrainingPanel::finetune_enabled() const {
  return lora_group_->isChecked();
}

void TrainingPanel::set_finetune_enabled(bool on) {
  lora_group_->setChecked(on);
}

const FinetuneBase* TrainingPanel::finetune_base() const {
  return base_in(base_);
}

bool TrainingPanel::select_finetune_base(int64_t run_id) {
  return select_in(base_, run_id);
}

LoraSpec TrainingPanel::lora_spec() const {
  LoraSpec s;
  s.rank = rank_->value();
  s.alpha = float(alpha_->value());
  s.targets.clear();
  for (QCheckBox* c : targets_)
    if (c->isChecked()) s.targets.push_back(c->text().toStdString());
  return s;
}

std::string TrainingPanel::quantize() const {
  return quant_->currentIndex() <= 0 ? "" : quant_->currentText().toStdString();
}

QCheckBox* TrainingPanel::target_box(const QString& role) const {
  for (QCheckBox* c : targets_)
    if (c->text() == role) return c;
  return nullptr;
}

void TrainingPanel::update_finetune() {
  counts_.reset();
  finetune_errors_.clear();
  QString text;
  const FinetuneBase* base = finetune_base();
  const LoraSpec spec = lora_spec();
  if (!base) {
    text = "Train a run with a checkpoint first: it appears here as a base.";
    finetune_errors_.push_back("fine-tune: choose a base run that has a checkpoint");
  } else if (spec.targets.empty()) {
    text = "Choose at least one target.";
    finetune_errors_.push_back("fine-tune: choose at least one LoRA target");
  } else {
    try {
      counts_ = count_finetune(base->model, spec);  // storage-less model: cheap
      text = trainable_text(*counts_);
      if (!quantize().empty()) text += " · base in " + QString::fromStdString(quantize());
      text += QString("\nmodel and tokenizer from run #%1's checkpoint (not the composer)")
                  .arg(base->run_id);
    } catch (const std::exception& e) {
      text = QString::fromStdString(e.what());
      finetune_errors_.push_back(std::string("fine-tune: ") + e.what());
    }
  }
  trainable_->setText(text);
  trainable_->setStyleSheet(finetune_errors_.empty() ? "" : "color: #b00020;");
  if (!finetune_enabled()) finetune_errors_.clear();
}

void TrainingPanel::set_status(const QString& text) {
  status_->setText(text);
}

void TrainingPanel::set_progress(int64_t done, int64_t total, double eta_s) {
  if (total <= 0) {
    progress_->hide();
    return;
  }
  // QProgressBar counts in int: scale step counts past its range.
  const int64_t scale = total > 1'000'000'000 ? total / 1'000'000'000 + 1 : 1;
  progress_->setRange(0, int(total / scale));
  progress_->setValue(int(std::min(done, total) / scale));
  QString eta;
  if (eta_s >= 0) {
    const int64_t s = int64_t(eta_s + 0.5);
    eta = s >= 3600 ? QString("%1h%2m").arg(s / 3600).arg((s % 3600) / 60, 2, 10, QChar('0'))
          : s >= 60 ? QString("%1m%2s").arg(s / 60).arg(s % 60, 2, 10, QChar('0'))
                    : QString("%1s").arg(s);
  }
  progress_->setFormat(QString("step %1 / %2%3")
                           .arg(done)
                           .arg(total)
                           .arg(eta.isEmpty() ? QString() : " · ETA " + eta));
  progress_->show();
}

void TrainingPanel::set_errors(const std::vector<std::string>& errors) {
  QStringList lines;
  for (const QString& g : group_errors(errors)) lines << "• " + g.toHtmlEscaped();
  errors_->setText(lines.join("<br>"));
  errors_->setVisible(!errors.empty());
}

}  // namespace bl
