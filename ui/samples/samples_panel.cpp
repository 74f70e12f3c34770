#include "samples/samples_panel.h"

#include <QDoubleSpinBox>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollBar>
#include <QSpinBox>
#include <QTextCursor>
#include <QTextDocument>
#include <QVBoxLayout>

namespace bl {

SamplesPanel::SamplesPanel(QWidget* parent) : QWidget(parent) {
  prompt_ = new QLineEdit("ROMEO:");
  prompt_->setObjectName("prompt");
  prompt_->setToolTip("Text the model continues (characters must occur in the corpus)");
  temperature_ = new QDoubleSpinBox;
  temperature_->setObjectName("temperature");
  temperature_->setRange(0.0, 3.0);
  temperature_->setSingleStep(0.1);
  temperature_->setValue(0.8);
  temperature_->setToolTip("0 = greedy");
  top_k_ = new QSpinBox;
  top_k_->setObjectName("top_k");
  top_k_->setRange(0, 1'000'000);
  top_k_->setSpecialValueText("off");
  top_k_->setToolTip("Sample among the k most likely tokens (off = all)");
  top_p_ = new QDoubleSpinBox;
  top_p_->setObjectName("top_p");
  top_p_->setRange(0.01, 1.0);
  top_p_->setSingleStep(0.05);
  top_p_->setValue(1.0);
  top_p_->setToolTip("Nucleus sampling: the smallest set of tokens holding this mass (1 = off)");
  length_ = new QSpinBox;
  length_->setObjectName("sample_length");
  length_->setRange(1, 4000);
  length_->setValue(200);
  length_->setSuffix(" tokens");
  every_ = new QSpinBox;
  every_->setObjectName("sample_every");
  every_->setRange(0, 1'000'000);
  every_->setValue(100);
  every_->setSpecialValueText("never");
  every_->setPrefix("every ");
  every_->setSuffix(" steps");
  generate_ = new QPushButton("Generate");
  generate_->setObjectName("generate");
  generate_->setToolTip("Sample from the current model now (between training steps)");
  busy_bar_ = new QProgressBar;
  busy_bar_->setObjectName("generating");
  busy_bar_->setRange(0, 0);  // indeterminate: the token count is not known ahead (stop strings)
  busy_bar_->setMaximumWidth(120);
  busy_bar_->setMaximumHeight(14);
  busy_bar_->setTextVisible(false);
  busy_bar_->hide();
  output_ = new QPlainTextEdit;
  output_->setObjectName("samples_output");
  output_->setReadOnly(true);
  output_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  output_->setPlaceholderText(
      "Samples from the model appear here while it trains (and on Generate).");

  auto* row = new QHBoxLayout;
  row->addWidget(new QLabel("Prompt"));
  row->addWidget(prompt_, 1);
  row->addWidget(new QLabel("Temperature"));
  row->addWidget(temperature_);
  row->addWidget(new QLabel("Top-k"));
  row->addWidget(top_k_);
  row->addWidget(new QLabel("Top-p"));
  row->addWidget(top_p_);
  row->addWidget(new QLabel("Length"));
  row->addWidget(length_);
  row->addWidget(new QLabel("Auto"));
  row->addWidget(every_);
  row->addWidget(generate_);
  row->addWidget(busy_bar_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(row);
  layout->addWidget(output_, 1);

  connect(generate_, &QPushButton::clicked, this, [this] {
    set_busy(true);
    emit generate_requested(request());
  });
  connect(prompt_, &QLineEdit::returnPressed, generate_, &QPushButton::click);
  connect(prompt_, &QLineEdit::editingFinished, this, &SamplesPanel::settings_changed);
  connect(temperature_, &QDoubleSpinBox::valueChanged, this, &SamplesPanel::settings_changed);
  connect(length_, &QSpinBox::valueChanged, this, &SamplesPanel::settings_changed);
  connect(top_k_, &QSpinBox::valueChanged, this, &SamplesPanel::settings_changed);
  connect(top_p_, &QDoubleSpinBox::valueChanged, this, &SamplesPanel::settings_changed);
  connect(every_, &QSpinBox::valueChanged, this, &SamplesPanel::settings_changed);
  set_can_generate(false);
}

SampleRequest SamplesPanel::request() const {
  SampleRequest r;
  r.prompt = prompt_->text().isEmpty() ? std::string("\n") : prompt_->text().toStdString();
  r.temperature = temperature_->value();
  r.max_new_tokens = length_->value();
  r.top_k = top_k_->value();
  r.top_p = top_p_->value();
  return r;
}

int64_t SamplesPanel::auto_every() const {
  return every_->value();
}

namespace {
QString heading(const SampleResult& s) {
  QString h = s.run_id ? QString("── run #%1 · step %2").arg(s.run_id).arg(s.step)
                       : QString("── step %1").arg(s.step);
  h += QString(" · temperature %1").arg(s.temperature, 0, 'f', 2);
  if (s.top_k > 0) h += QString(" · top-k %1").arg(s.top_k);
  if (s.top_p < 1.0) h += QString(" · top-p %1").arg(s.top_p, 0, 'f', 2);
  return h + " ──";
}
}  // namespace

void SamplesPanel::append(const QString& text) {
  output_->appendPlainText(text);
  output_->verticalScrollBar()->setValue(output_->verticalScrollBar()->maximum());
}

void SamplesPanel::remove_partial() {
  if (partial_from_ < 0) return;
  QTextCursor c(output_->document());
  c.setPosition(partial_from_);
  c.movePosition(QTextCursor::End, QTextCursor::KeepAnchor);
  c.removeSelectedText();
  partial_from_ = -1;
  partial_.clear();
}

void SamplesPanel::add_sample(const SampleResult& s) {
  remove_partial();
  set_busy(false);
  ++count_;
  const QString body = s.ok ? QString::fromStdString(s.prompt + s.text)
                            : "(cannot sample: " + QString::fromStdString(s.text) + ")";
  append(heading(s) + "\n" + body + "\n");
}

void SamplesPanel::show_partial(const SampleResult& s) {
  remove_partial();
  set_busy(true);
  partial_ = QString::fromStdString(s.text);
  // From the block separator appendPlainText inserts (none into an empty document).
  const QTextDocument* doc = output_->document();
  partial_from_ = doc->isEmpty() ? 0 : doc->characterCount() - 1;
  append(heading(s) + " (generating…)\n" + QString::fromStdString(s.prompt) + partial_);
}

void SamplesPanel::clear() {
  output_->clear();
  count_ = 0;
  partial_from_ = -1;
  partial_.clear();
}

void SamplesPanel::set_can_generate(bool on) {
  can_generate_ = on;
  generate_->setEnabled(on && !busy_);
}

void SamplesPanel::set_busy(bool on) {
  if (on == busy_) return;
  busy_ = on;
  busy_bar_->setVisible(on);
  generate_->setText(on ? "Generating…" : "Generate");
  generate_->setEnabled(can_generate_ && !on);
  if (on)
    setCursor(Qt::BusyCursor);
  else
    unsetCursor();
}

}  // namespace bl
