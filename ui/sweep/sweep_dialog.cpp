#include "sweep/sweep_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProcess>
#include <QPushButton>
#include <QSaveFile>
#include <QSpinBox>
#include <QThread>
#include <QVBoxLayout>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sweep/slurm_submit.h"
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

  mode_ = new QComboBox;
  mode_->setObjectName("sweep_mode");
  mode_->addItem("Local workers");
  mode_->addItem("Slurm job array");
  mode_->setToolTip(
      "Local: worker processes on this machine. Slurm: one array task per trial "
      "(sbatch --array=0-K%M) and a collection job that imports the results");
  partition_ = new QLineEdit;
  partition_->setObjectName("sweep_partition");
  partition_->setPlaceholderText("cluster default");
  time_ = new QLineEdit;
  time_->setObjectName("sweep_time");
  time_->setPlaceholderText("partition default, e.g. 01:00:00");
  max_parallel_ = new QSpinBox;
  max_parallel_->setObjectName("sweep_max_parallel");
  max_parallel_->setRange(0, 100000);
  max_parallel_->setSpecialValueText("no limit");
  max_parallel_->setToolTip("Array tasks running at once (%M of --array=0-K%M)");
  task_threads_ = new QSpinBox;
  task_threads_->setObjectName("sweep_task_threads");
  task_threads_->setRange(1, 1024);
  task_threads_->setToolTip("--cpus-per-task and train.threads of each task");
  shared_ = new QLineEdit;
  shared_->setObjectName("sweep_shared");
  shared_->setPlaceholderText("<database folder>/sweeps/<name>-<id> (must be on shared storage)");
  local_dir_ = new QLineEdit;
  local_dir_->setObjectName("sweep_local_dir");
  local_dir_->setPlaceholderText("$TMPDIR or /tmp on the node");
  dry_run_ = new QCheckBox("Write only (dry run): write the job scripts, submit nothing");
  dry_run_->setObjectName("sweep_dry_run");
  dry_run_->setChecked(true);

  // One form, so every label lines up; the rows of the mode not chosen are hidden.
  form_ = new QFormLayout;
  form_->addRow("Run on", mode_);
  form_->addRow("Workers", workers_);
  form_->addRow("Partition", partition_);
  form_->addRow("Time limit", time_);
  form_->addRow("Tasks at once", max_parallel_);
  form_->addRow("Threads per task", task_threads_);
  form_->addRow("Shared folder", shared_);
  form_->addRow("Node-local folder", local_dir_);
  form_->addRow(dry_run_);
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(load_);
  buttons->addStretch(1);
  buttons->addWidget(start_);
  buttons->addWidget(stop_);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(spec_, 2);
  layout->addLayout(form_);
  layout->addWidget(status_);
  layout->addLayout(buttons);
  layout->addWidget(log_, 1);
  resize(640, 560);

  connect(spec_, &QPlainTextEdit::textChanged, this, [this] {
    validate();
    update_buttons();
  });
  connect(mode_, &QComboBox::currentIndexChanged, this, &SweepDialog::update_buttons);
  connect(dry_run_, &QCheckBox::toggled, this, &SweepDialog::update_buttons);
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
  if (slurm_mode()) return submit_slurm();
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

bool SweepDialog::slurm_mode() const {
  return mode_->currentIndex() == 1;
}

bool SweepDialog::submit_slurm() {
  SlurmRequest req;
  req.cli = cli_.toStdString();
  req.db = db_path_;
  req.shared_dir = shared_->text().trimmed().toStdString();
  req.max_parallel = max_parallel_->value();
  req.threads = task_threads_->value();
  req.partition = partition_->text().trimmed().toStdString();
  req.time_limit = time_->text().trimmed().toStdString();
  req.local_dir = local_dir_->text().trimmed().toStdString();
  req.dry_run = dry_run_->isChecked();
  SlurmSubmission sub;
  try {
    // The resolved spec has absolute paths; it was checked by validate().
    const SweepSpec spec =
        parse_sweep_spec(nlohmann::json::parse(resolved_.toStdString()), "spec", "/");
    if (!QFileInfo(cli_).isExecutable())
      throw SlurmSubmitError("blocklab-cli not found at " + req.cli +
                             " (the tasks run it; set $BLOCKLAB_CLI)");
    sub = submit_slurm_sweep(spec, req);
  } catch (const std::exception& e) {
    status_->setText(QString::fromStdString(e.what()));
    status_->setStyleSheet("color: #b00020");
    return false;
  }
  const SlurmOptions& o = sub.options;
  QString array = QString("0-%1").arg(o.trials - 1);
  if (o.max_parallel > 0) array += QString("%%1").arg(o.max_parallel);
  log_->clear();
  log_->appendPlainText(QString("Array job script (--array=%1, one task per trial): %2")
                            .arg(array, QString::fromStdString(sub.array_script)));
  log_->appendPlainText("Collection job script (runs after the array, imports into " +
                        QString::fromStdString(o.main_db) +
                        "): " + QString::fromStdString(sub.collect_script));
  status_->setStyleSheet("");
  if (req.dry_run) {
    log_->appendPlainText(QString("Submit on the cluster: sbatch %1, then sbatch "
                                  "--dependency=afterany:<job id> %2")
                              .arg(QString::fromStdString(sub.array_script),
                                   QString::fromStdString(sub.collect_script)));
    status_->setText(QString("Wrote the job scripts for %1 trials to %2 (nothing submitted).")
                         .arg(o.trials)
                         .arg(QString::fromStdString(o.shared_dir)));
    return true;
  }
  status_->setText(QString("Submitted sweep %1: array job %2 (%3 trials), collection job %4; "
                           "its runs appear here when the collection job has imported them.")
                       .arg(*sub.sweep_id)
                       .arg(QString::fromStdString(sub.array_job))
                       .arg(o.trials)
                       .arg(QString::fromStdString(sub.collect_job)));
  log_->appendPlainText(status_->text());
  emit sweep_submitted(*sub.sweep_id);
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
  start_->setText(!slurm_mode() ? "Start" : dry_run_->isChecked() ? "Write scripts" : "Submit");
  start_->setEnabled(!running() && !resolved_.isEmpty());
  mode_->setEnabled(!running());
  const bool slurm = slurm_mode();
  form_->setRowVisible(workers_, !slurm);
  for (QWidget* w : std::initializer_list<QWidget*>{partition_, time_, max_parallel_, task_threads_,
                                                    shared_, local_dir_, dry_run_})
    form_->setRowVisible(w, slurm);
  stop_->setVisible(!slurm);  // a submitted array is Slurm's to stop (scancel)
  stop_->setEnabled(running());
  spec_->setReadOnly(running());
  load_->setEnabled(!running());
}

}  // namespace bl
