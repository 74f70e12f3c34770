#include "sweep/sweep_dialog.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProcess>
#include <QPushButton>
#include <QSaveFile>
#include <QSpinBox>
#include <QThread>
#include <QVBoxLayout>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sweep/sweep_spec.h"

namespace bl {

namespace {

const char* kExample = R"({
  "name": "lr-seeds",
  "preset": "gpt-tiny",
  "set": ["train.max_steps=200"],
  "grid": {"train.learning_rate": [0.003, 0.001, 0.0003]},
  "seeds": 2
})";

QString default_cli() {
  const QByteArray env = qgetenv("BLOCKLAB_CLI");
  if (!env.isEmpty()) return QString::fromLocal8Bit(env);
  return QCoreApplication::applicationDirPath() + "/blocklab-cli";
}

}  // namespace

SweepDialog::SweepDialog(const std::string& db_path, QWidget* parent, const QString& cli)
    : QDialog(parent), db_path_(db_path), cli_(cli.isEmpty() ? default_cli() : cli) {
  setWindowTitle("Sweep");
  setObjectName("sweep_dialog");
  spec_ = new QPlainTextEdit;
  spec_->setObjectName("sweep_spec");
  spec_->setPlaceholderText("Sweep spec JSON (see README, Sweeps)");
  workers_ = new QSpinBox;
  workers_->setObjectName("sweep_workers");
  workers_->setRange(1, std::max(1, QThread::idealThreadCount()));
  workers_->setToolTip("Worker processes; threads per run = max(1, hardware threads / workers)");
  status_ = new QLabel;
  status_->setObjectName("sweep_status");
  status_->setWordWrap(true);
  log_ = new QPlainTextEdit;
  log_->setObjectName("sweep_log");
  log_->setReadOnly(true);
  log_->setMaximumBlockCount(5000);
  load_ = new QPushButton("Load…");
  start_ = new QPushButton("Start");
  start_->setObjectName("sweep_start");
  stop_ = new QPushButton("Stop");
  stop_->setObjectName("sweep_stop");
  process_ = new QProcess(this);
  process_->setProcessChannelMode(QProcess::MergedChannels);

  auto* form = new QFormLayout;
  form->addRow("Workers", workers_);
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(load_);
  buttons->addStretch(1);
  buttons->addWidget(start_);
  buttons->addWidget(stop_);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(spec_, 2);
  layout->addLayout(form);
  layout->addWidget(status_);
  layout->addLayout(buttons);
  layout->addWidget(log_, 1);
  resize(640, 560);

  connect(spec_, &QPlainTextEdit::textChanged, this, [this] {
    validate();
    update_buttons();
  });
  connect(load_, &QPushButton::clicked, this, &SweepDialog::load_file);
  connect(start_, &QPushButton::clicked, this, [this] { start(); });
  connect(stop_, &QPushButton::clicked, this, &SweepDialog::stop);
  connect(process_, &QProcess::readyRead, this, [this] {
    const QString text = QString::fromUtf8(process_->readAll());
    for (const QString& line : text.split('\n', Qt::SkipEmptyParts)) log_->appendPlainText(line);
  });
  connect(process_, &QProcess::finished, this, [this](int code, QProcess::ExitStatus st) {
    const int exit_code = st == QProcess::NormalExit ? code : -1;
    status_->setText(exit_code == 0 ? "Sweep finished: every trial done."
                                    : QString("Sweep ended (exit %1): start it again to continue "
                                              "the trials not done.")
                                          .arg(exit_code));
    update_buttons();
    emit sweep_finished(exit_code);
  });
  set_spec(kExample, QDir::currentPath());
}

SweepDialog::~SweepDialog() {
  // A running sweep is stopped cleanly (its trials resume next time), not orphaned.
  if (running()) {
    process_->terminate();
    if (!process_->waitForFinished(30000)) process_->kill();
  }
}

void SweepDialog::set_spec(const QString& json, const QString& base_dir) {
  base_dir_ = base_dir;
  spec_->setPlainText(json);  // validates through textChanged
}

bool SweepDialog::validate() {
  resolved_.clear();
  try {
    const std::string text = spec_->toPlainText().toStdString();
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) throw SweepSpecError("the spec is not valid JSON");
    const SweepSpec s = parse_sweep_spec(j, "spec", base_dir_.toStdString());
    check_sweep_trials(s);
    resolved_ = QString::fromStdString(s.source.dump(2));
    QString msg = QString("%1 trials").arg(s.trial_count());
    if (s.trial_count() < s.full_count())
      msg += QString(" (budget; %1 without)").arg(s.full_count());
    status_->setText(msg + ", recorded in " + QString::fromStdString(db_path_));
    status_->setStyleSheet("");
    return true;
  } catch (const std::exception& e) {
    status_->setText(QString::fromStdString(e.what()));
    status_->setStyleSheet("color: #b00020");
    return false;
  }
}

bool SweepDialog::start() {
  if (running()) return false;
  if (!validate()) {
    update_buttons();
    return false;
  }
  // The CLI reads the spec from a file: the resolved spec (absolute paths),
  // next to the database, named after the sweep so the same spec finds its sweep again.
  const auto spec = nlohmann::json::parse(resolved_.toStdString());
  const QString dir = QString::fromStdString(
      (std::filesystem::absolute(db_path_).parent_path() / "sweeps").string());
  QDir().mkpath(dir);
  QString name = QString::fromStdString(spec.value("name", "sweep"));
  for (QChar& c : name)  // a file name, whatever the sweep is called
    if (!c.isLetterOrNumber() && c != '-' && c != '_' && c != '.') c = '_';
  const QString file = dir + "/" + name + ".json";
  QSaveFile f(file);
  if (!f.open(QIODevice::WriteOnly) || f.write(resolved_.toUtf8()) < 0 || !f.commit()) {
    status_->setText("Cannot write " + file + ": " + f.errorString());
    return false;
  }
  if (!QFileInfo(cli_).isExecutable()) {
    status_->setText("blocklab-cli not found at " + cli_ + " (set $BLOCKLAB_CLI)");
    return false;
  }
  log_->clear();
  process_->start(cli_, {"sweep", file, "--workers", QString::number(workers_->value()), "--db",
                         QString::fromStdString(db_path_)});
  if (!process_->waitForStarted(10000)) {
    status_->setText("Cannot start " + cli_ + ": " + process_->errorString());
    return false;
  }
  status_->setText(QString("Sweep running in %1 worker process(es)…").arg(workers_->value()));
  update_buttons();
  return true;
}

void SweepDialog::stop() {
  if (!running()) return;
  process_->terminate();  // SIGTERM: the sweep stops its workers after their current step
  status_->setText("Stopping: each worker finishes its current step…");
}

bool SweepDialog::running() const {
  return process_->state() != QProcess::NotRunning;
}

void SweepDialog::load_file() {
  const QString path =
      QFileDialog::getOpenFileName(this, "Load sweep spec", QString(), "Sweep spec (*.json)");
  if (path.isEmpty()) return;
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly) || f.size() > (1 << 20)) {
    status_->setText("Cannot read " + path);
    return;
  }
  set_spec(QString::fromUtf8(f.readAll()), QFileInfo(path).absolutePath());
}

void SweepDialog::update_buttons() {
  start_->setEnabled(!running() && !resolved_.isEmpty());
  stop_->setEnabled(running());
  spec_->setReadOnly(running());
  load_->setEnabled(!running());
}

}  // namespace bl
