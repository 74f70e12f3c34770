#include "training/training_panel.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QThread>
#include <QVBoxLayout>

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
}  // namespace

TrainingPanel::TrainingPanel(QWidget* parent) : QWidget(parent) {
  data_ = new QLineEdit;
  data_->setObjectName("data_path");
  data_->setToolTip("UTF-8 text corpus (character tokenizer)");
  browse_ = new QPushButton("…");
  browse_->setObjectName("browse_data");
  browse_->setToolTip("Choose a UTF-8 text corpus");
  browse_->setMaximumWidth(32);
  auto* data_row = new QHBoxLayout;
  data_row->setContentsMargins(0, 0, 0, 0);
  data_row->addWidget(data_, 1);
  data_row->addWidget(browse_);
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
  grid->setColumnStretch(1, 1);
  grid->setColumnStretch(3, 1);

  auto* top = new QFormLayout;
  top->setContentsMargins(0, 0, 0, 0);
  top->addRow("dataset", data_row);
  top->addRow("run name", name_);
  top->addRow("tags", tags_);

  start_ = button("Start", "start", "Train a new run with this configuration");
  pause_ = button("Pause", "pause", "Hold after the current step");
  step_ = button("Step", "step", "While paused: run exactly one more step");
  resume_ = button("Resume", "resume", "Continue a paused run");
  stop_ = button("Stop", "stop", "End the run after the current step (recorded as stopped)");
  auto* buttons = new QHBoxLayout;
  buttons->setSpacing(4);
  for (QPushButton* b : {start_, pause_, step_, resume_, stop_}) buttons->addWidget(b);
  status_ = new QLabel("Ready");
  status_->setObjectName("status");
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  errors_ = new QLabel;
  errors_->setObjectName("errors");
  errors_->setWordWrap(true);
  errors_->setStyleSheet("color: #b00020;");
  errors_->hide();

  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  layout->addLayout(top);
  layout->addLayout(grid);
  layout->addLayout(buttons);
  layout->addWidget(errors_);
  layout->addWidget(status_);
  layout->addStretch(1);

  connect(data_, &QLineEdit::editingFinished, this, &TrainingPanel::changed);
  for (QSpinBox* s :
       {warmup_, max_steps_, batch_size_, seq_len_, accum_, eval_interval_, seed_, threads_})
    connect(s, &QSpinBox::valueChanged, this, &TrainingPanel::changed);
  for (QDoubleSpinBox* s : {lr_, weight_decay_, clip_})
    connect(s, &QDoubleSpinBox::valueChanged, this, &TrainingPanel::changed);
  for (QComboBox* c : {optimizer_, schedule_})
    connect(c, &QComboBox::currentTextChanged, this, &TrainingPanel::changed);
  connect(browse_, &QPushButton::clicked, this, [this] {
    const QString f = QFileDialog::getOpenFileName(this, "Training corpus", data_->text(),
                                                   "Text (*.txt);;All files (*)");
    if (!f.isEmpty()) {
      data_->setText(f);
      emit changed();
    }
  });
  connect(start_, &QPushButton::clicked, this, &TrainingPanel::start_requested);
  connect(pause_, &QPushButton::clicked, this, &TrainingPanel::pause_requested);
  connect(step_, &QPushButton::clicked, this, &TrainingPanel::step_requested);
  connect(resume_, &QPushButton::clicked, this, &TrainingPanel::resume_requested);
  connect(stop_, &QPushButton::clicked, this, &TrainingPanel::stop_requested);
  set_state(State::kIdle, true);
}

QList<QWidget*> TrainingPanel::fields() const {
  return {data_,  browse_, name_,          tags_,         optimizer_,  schedule_,
          lr_,    warmup_, max_steps_,     weight_decay_, batch_size_, seq_len_,
          accum_, clip_,   eval_interval_, seed_,         threads_};
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
  step_->setEnabled(s == State::kPaused);
  resume_->setEnabled(s == State::kPaused);
  stop_->setEnabled(!idle);
  for (QWidget* w : fields()) w->setEnabled(idle);
}

void TrainingPanel::set_status(const QString& text) {
  status_->setText(text);
}

void TrainingPanel::set_errors(const std::vector<std::string>& errors) {
  QStringList lines;
  for (const std::string& e : errors) lines << "• " + QString::fromStdString(e).toHtmlEscaped();
  errors_->setText(lines.join("<br>"));
  errors_->setVisible(!errors.empty());
}

}  // namespace bl
