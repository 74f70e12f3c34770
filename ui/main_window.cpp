#include "main_window.h"

#include <QCloseEvent>
#include <QComboBox>
#include <QDockWidget>
#include <QFileInfo>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSignalBlocker>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>
#include <QVBoxLayout>
#include <exception>

#include "arch/arch_panel.h"
#include "browser/run_browser.h"
#include "browser/run_loader.h"
#include "inspect/heatmap_panel.h"
#include "plot/charts_panel.h"
#include "run/launcher.h"
#include "run/memory_estimate.h"
#include "samples/samples_panel.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"
#include "training/training_panel.h"

namespace bl {

MainWindow::MainWindow(const std::string& preset_name, const std::string& db_path, QWidget* parent)
    : QMainWindow(parent), session_(db_path) {
  setWindowTitle("Blocklab");
  // Create (or migrate) the database once, so the browser's read-only
  // connection can open it before the first run; this also marks runs of
  // crashed processes interrupted, as every CLI command does.
  QString db_problem;
  try {
    ExperimentStore(session_.db_path()).close();
  } catch (const std::exception& e) {
    db_problem = QString::fromStdString(e.what());
  }

  presets_ = new QComboBox;
  presets_->setObjectName("preset");
  for (const std::string& n : preset_names()) presets_->addItem(QString::fromStdString(n));
  preset_info_ = new QLabel;
  preset_info_->setWordWrap(true);
  preset_info_->setStyleSheet("color: #555;");
  train_ = new TrainingPanel;
  train_->set_data_path(QString::fromStdString(resource_dir() + "/data/tinyshakespeare.txt"));

  auto* side = new QWidget;
  auto* side_layout = new QVBoxLayout(side);
  side_layout->setContentsMargins(6, 6, 6, 6);
  auto* preset_row = new QHBoxLayout;
  preset_row->addWidget(new QLabel("Preset"));
  preset_row->addWidget(presets_, 1);
  side_layout->addLayout(preset_row);
  side_layout->addWidget(preset_info_);
  side_layout->addWidget(train_, 1);
  auto* dock = new QDockWidget("Run");
  dock->setObjectName("run_dock");
  dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
  // Scrolls vertically: the fine-tune, distillation and DPO boxes must not set
  // the window's minimum height (a laptop screen).
  auto* side_scroll = new QScrollArea;
  side_scroll->setObjectName("run_scroll");
  side_scroll->setWidget(side);
  side_scroll->setWidgetResizable(true);
  side_scroll->setFrameShape(QFrame::NoFrame);
  side_scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  side_scroll->setMinimumWidth(side->minimumSizeHint().width() +
                               side_scroll->verticalScrollBar()->sizeHint().width());
  dock->setWidget(side_scroll);
  addDockWidget(Qt::LeftDockWidgetArea, dock);
  run_dock_ = dock;

  arch_ = new ArchPanel;
  charts_ = new ChartsPanel;
  samples_ = new SamplesPanel;
  browser_ = new RunBrowser(session_.db_path());
  tabs_ = new QTabWidget;
  tabs_->setObjectName("main_tabs");
  tabs_->addTab(arch_, "Composer");
  tabs_->addTab(charts_, "Charts");
  tabs_->addTab(samples_, "Samples");
  tabs_->addTab(browser_, "Runs");
  heatmaps_ = new HeatmapPanel(session_.db_path());
  tabs_->addTab(heatmaps_, "Heatmaps");
  // Runs may have been added or grown since: re-read when the tab is shown.
  connect(tabs_, &QTabWidget::currentChanged, this, [this](int i) {
    if (tabs_->widget(i) == heatmaps_) heatmaps_->reload();
  });
  setCentralWidget(tabs_);
  statusBar()->showMessage(db_problem.isEmpty() ? "Experiment database: " +
                                                      QString::fromStdString(session_.db_path())
                                                : "Experiment database unavailable: " + db_problem);

  connect(presets_, &QComboBox::currentTextChanged, this,
          [this](const QString& n) { load_preset_by_name(n.toStdString()); });
  connect(arch_, &ArchPanel::changed, this, &MainWindow::refresh);
  connect(train_, &TrainingPanel::changed, this, &MainWindow::refresh);
  connect(train_, &TrainingPanel::start_requested, this, &MainWindow::start);
  connect(train_, &TrainingPanel::pause_requested, this, [this] {
    session_.pause();
    update_state();
  });
  connect(train_, &TrainingPanel::step_requested, this, [this] { session_.step_once(); });
  connect(train_, &TrainingPanel::resume_requested, this, [this] {
    session_.resume();
    update_state();
  });
  connect(train_, &TrainingPanel::stop_requested, this, [this] {
    session_.stop();
    stopping_ = true;
    train_->set_status(
        "Stopping: finishing the current step, then the final evaluation and checkpoint…");
    update_state();
  });
  connect(samples_, &SamplesPanel::generate_requested, this, [this](const SampleRequest& r) {
    if (!session_.request_sample(r)) {
      samples_->set_busy(false);
      train_->set_status("No model to sample: start a run first.");
    }
  });
  connect(samples_, &SamplesPanel::settings_changed, this, &MainWindow::push_sampling);
  connect(browser_, &RunBrowser::open_in_composer, this, &MainWindow::load_run_config);
  connect(browser_, &RunBrowser::resume_requested, this, &MainWindow::resume_run);

  poll_timer_ = new QTimer(this);
  poll_timer_->setInterval(50);  // 20 Hz: one drain per tick, never one event per step
  connect(poll_timer_, &QTimer::timeout, this, &MainWindow::poll);
  poll_timer_->start();

  const int idx = presets_->findText(QString::fromStdString(preset_name));
  if (idx >= 0) {
    const QSignalBlocker b(presets_);
    presets_->setCurrentIndex(idx);
  }
  load_preset_by_name(preset_name);
  refresh_finetune_bases();
  connect(train_->finetune_group(), &QGroupBox::toggled, this, [this](bool on) {
    if (on) refresh_finetune_bases();
  });
  connect(train_->distill_group(), &QGroupBox::toggled, this, [this](bool on) {
    if (on) refresh_finetune_bases();  // the teachers are the same stored runs
  });
  for (QGroupBox* box : {train_->dpo_group(), train_->grpo_group()})
    connect(box, &QGroupBox::toggled, this, [this](bool on) {
      if (on) refresh_finetune_bases();  // and so are the models DPO and GRPO tune
    });
  build_menus();
  resize(1400, 880);
}

MainWindow::~MainWindow() {
  session_.join();
}

void MainWindow::load_preset_by_name(const std::string& name) {
  if (session_.running()) return;
  try {
    load_preset(bl::load_preset(name), name);
  } catch (const std::exception& e) {
    train_->set_status(QString("Cannot load preset: %1").arg(e.what()));
  }
}

void MainWindow::load_preset(const Preset& p, const std::string& name) {
  if (session_.running()) return;
  base_ = p;
  parent_run_id_.reset();
  setWindowTitle(QString("Blocklab — %1").arg(QString::fromStdString(name)));
  preset_info_->setText(QString::fromStdString(base_.description));
  train_->set_run_name("");
  arch_->set_model(base_.model, name);
  train_->set_config(base_.train);
  refresh();
}

bool MainWindow::load_run_config(const RunRecord& run) {
  if (session_.running()) {
    train_->set_status("Stop the current run before loading another configuration.");
    return false;
  }
  try {
    base_ = preset_from_json({{"model", run.model_config}, {"train", run.train_config}});
  } catch (const std::exception& e) {
    train_->set_status(
        QString("Run #%1 has an unusable configuration: %2").arg(run.id).arg(e.what()));
    return false;
  }
  base_.description = "Forked from run #" + std::to_string(run.id) + " (" + run.name + ")";
  parent_run_id_ = run.id;
  {
    const QSignalBlocker b(presets_);
    const int idx = presets_->findText(QString::fromStdString(run.preset));
    if (idx >= 0) presets_->setCurrentIndex(idx);
  }
  preset_info_->setText(QString::fromStdString(base_.description));
  setWindowTitle(QString("Blocklab — fork of run #%1").arg(run.id));
  arch_->set_model(base_.model, run.preset);
  train_->set_config(base_.train);
  if (!run.dataset_path.empty()) train_->set_data_path(QString::fromStdString(run.dataset_path));
  train_->set_run_name(QString::fromStdString(run.name + " (fork)"));
  refresh();
  tabs_->setCurrentWidget(arch_);
  train_->set_status(
      QString("Loaded run #%1's configuration: edit it and press Start to fork it.").arg(run.id));
  return true;
}

void MainWindow::refresh_finetune_bases() {
  std::vector<FinetuneBase> bases;
  try {
    ExperimentStore store = ExperimentStore::open_readonly(session_.db_path());
    for (const RunRecord& r : store.list_runs()) {
      if (r.status == RunStatus::kRunning) continue;
      const auto ck = latest_checkpoint(store, r.id);
      if (!ck) continue;
      FinetuneBase b;
      b.run_id = r.id;
      b.label = QString("#%1 %2").arg(r.id).arg(QString::fromStdString(r.name));
      try {
        const CheckpointInfo info = read_checkpoint_info(ck->path);
        if (!info.finetune.is_null()) continue;  // a LoRA run's adapter-only checkpoint
        b.model = info.model;
        b.model.vocab_size = tokenizer_from_json(info.tokenizer)->vocab_size();
      } catch (const std::exception&) {
        continue;  // an unreadable checkpoint is no base
      }
      bases.push_back(std::move(b));
    }
  } catch (const std::exception&) {
    // No database yet: no bases.
  }
  train_->set_finetune_bases(std::move(bases));
  refresh();
}

Preset MainWindow::current_preset() const {
  Preset p = base_;
  arch_->apply_to(p.model);
  train_->apply_to(p.train);
  if (train_->finetune_enabled())
    if (const FinetuneBase* b = train_->finetune_base()) p.model = b->model;
  if (train_->dpo_enabled())
    if (const FinetuneBase* b = train_->dpo_reference()) p.model = b->model;
  if (train_->grpo_enabled())
    if (const FinetuneBase* b = train_->grpo_model()) p.model = b->model;
  return p;
}

void MainWindow::refresh() {
  const Preset p = current_preset();
  errors_ = validation_errors(p);
  for (const std::string& e : train_->finetune_errors()) errors_.push_back(e);
  // The launcher's memory check, shown before Start (it refuses such a run anyway).
  if (errors_.empty() && !train_->finetune_enabled())
    errors_ = memory_errors(estimate_training_memory(p.model, p.train), machine_memory_bytes());
  const QString data = train_->data_path();
  if (data.isEmpty())
    errors_.push_back("dataset: choose a text file to train on");
  else if (!QFileInfo(data).isFile())
    errors_.push_back("dataset: " + data.toStdString() + " does not exist");
  Preset composed = base_;  // the composer analyses its own model even while fine-tuning
  arch_->apply_to(composed.model);
  arch_->show_analysis(composed.model, p.train.seq_len, errors_, p.train.batch_size);
  train_->set_errors(errors_);
  update_state();
}

void MainWindow::update_state() {
  TrainingPanel::State s = TrainingPanel::State::kIdle;
  if (session_.running())
    s = stopping_           ? TrainingPanel::State::kStopping
        : session_.paused() ? TrainingPanel::State::kPaused
                            : TrainingPanel::State::kRunning;
  else
    stopping_ = false;
  const int key = int(s) * 4 + (errors_.empty() ? 2 : 0) + (session_.has_model() ? 1 : 0);
  if (key == shown_state_) return;  // polled at 20 Hz: touch widgets only on change
  shown_state_ = key;
  train_->set_state(s, errors_.empty());
  arch_->set_editable(s == TrainingPanel::State::kIdle);
  presets_->setEnabled(s == TrainingPanel::State::kIdle);
  samples_->set_can_generate(session_.running() || session_.has_model());
}

void MainWindow::push_sampling() {
  session_.set_auto_sample(samples_->auto_every(), samples_->request());
}

void MainWindow::start() {
  refresh();
  if (!errors_.empty() || session_.running()) return;
  // The run record names what was trained from this spec alone: the preset the
  // composer's model came from (its Presets menu included), not the window's.
  const Preset composed = current_preset();
  RunSpec spec;
  spec.config = composed;
  spec.preset_name = arch_->preset_name();
  // The panel's choice (char: built from the chosen corpus, also for a fork).
  spec.tokenizer = train_->tokenizer_spec();
  if (spec.tokenizer == "bpe:" && !train_->finetune_enabled() && !train_->distill_enabled() &&
      !train_->dpo_enabled() && !train_->grpo_enabled()) {
    train_->set_status(
        "Tokenizer: choose the folder of a byte-level BPE tokenizer "
        "(blocklab-cli tokenizer train --data FILE --vocab-size N --out DIR).");
    return;
  }
  spec.data_path = train_->data_path().toStdString();
  spec.name = train_->run_name().toStdString();
  spec.tags = train_->tags();
  if (parent_run_id_) {
    // A run's config opened in the composer: a fork with newly initialised weights.
    spec.kind = RunKind::kFork;
    spec.parent_run_id = parent_run_id_;
    spec.fresh_weights = true;
  }
  const FinetuneBase* ft_base = train_->finetune_enabled() ? train_->finetune_base() : nullptr;
  if (ft_base) {
    spec.kind = RunKind::kFinetune;
    spec.config.reset();
    spec.preset_name.clear();
    spec.tokenizer.clear();
    spec.parent_run_id.reset();
    spec.finetune.base_run_id = ft_base->run_id;
    spec.finetune.lora = train_->lora_spec();
    spec.finetune.quantize = train_->quantize();
    spec.finetune.train_config = composed.train;
  }
  const FinetuneBase* teacher =
      !ft_base && train_->distill_enabled() ? train_->distill_teacher() : nullptr;
  if (!ft_base && train_->distill_enabled() && !teacher) {
    train_->set_status("Distill from: pick a teacher run (a stored run with a checkpoint).");
    return;
  }
  if (teacher) {
    // The composer's model as a fresh student of the teacher's newest
    // checkpoint, read with the teacher's tokenizer (the launcher checks it).
    spec.kind = RunKind::kDistill;
    spec.parent_run_id.reset();
    spec.fresh_weights = false;
    spec.tokenizer.clear();
    spec.distill.teacher_run_id = teacher->run_id;
    spec.distill.temperature = train_->distill_temperature();
    spec.distill.alpha = train_->distill_alpha();
  }
  const FinetuneBase* dpo_model =
      !ft_base && !teacher && train_->dpo_enabled() ? train_->dpo_reference() : nullptr;
  if (!ft_base && !teacher && train_->dpo_enabled() && !dpo_model) {
    train_->set_status("Preference tuning: pick the run to tune (a stored run with a checkpoint).");
    return;
  }
  if (dpo_model) {
    // The stored run's model and tokenizer, this panel's train settings, the
    // data file's pairs.
    spec.kind = RunKind::kPreference;
    spec.config.reset();
    spec.preset_name.clear();
    spec.tokenizer.clear();
    spec.parent_run_id.reset();
    spec.fresh_weights = false;
    spec.preference.base_run_id = dpo_model->run_id;
    spec.preference.beta = train_->dpo_beta();
    spec.preference.train_config = composed.train;
  }
  const FinetuneBase* grpo_model =
      !ft_base && !teacher && !dpo_model && train_->grpo_enabled() ? train_->grpo_model() : nullptr;
  if (!ft_base && !teacher && !dpo_model && train_->grpo_enabled() && !grpo_model) {
    train_->set_status("Reinforcement: pick the run to tune (a stored run with a checkpoint).");
    return;
  }
  if (grpo_model) {
    // The stored run's model and tokenizer, this panel's train settings, the
    // data file's prompts, the box's reward and recipe.
    spec.kind = RunKind::kGrpo;
    spec.config.reset();
    spec.preset_name.clear();
    spec.tokenizer.clear();
    spec.parent_run_id.reset();
    spec.fresh_weights = false;
    spec.grpo.base_run_id = grpo_model->run_id;
    spec.grpo.reward = train_->grpo_reward();
    spec.grpo.grpo = train_->grpo_options();
    spec.grpo.train_config = composed.train;
  }
  max_steps_ = composed.train.max_steps;
  live_name_ = train_->run_name();
  if (live_name_.isEmpty() && grpo_model)
    live_name_ = QString("GRPO of #%1").arg(grpo_model->run_id);
  if (live_name_.isEmpty() && dpo_model) live_name_ = QString("DPO of #%1").arg(dpo_model->run_id);
  if (live_name_.isEmpty() && teacher)
    live_name_ = QString("%1 distilled from #%2")
                     .arg(QString::fromStdString(
                         arch_->preset_name().empty() ? base_.model.name : arch_->preset_name()))
                     .arg(teacher->run_id);
  if (live_name_.isEmpty() && ft_base) live_name_ = QString("LoRA of #%1").arg(ft_base->run_id);
  if (live_name_.isEmpty())
    live_name_ = QString::fromStdString(arch_->preset_name().empty() ? base_.model.name
                                                                     : arch_->preset_name());
  launch(
      spec,
      ft_base ? QString("Loading run #%1's checkpoint and attaching adapters…").arg(ft_base->run_id)
      : teacher ? QString("Loading teacher run #%1 and preparing the student…").arg(teacher->run_id)
      : dpo_model ? QString("Loading run #%1 and scoring the pairs with the reference…")
                        .arg(dpo_model->run_id)
      : grpo_model ? QString("Loading run #%1 and its reference…").arg(grpo_model->run_id)
                   : QString("Preparing data and model…"));
}

bool MainWindow::resume_run(const RunRecord& run) {
  if (session_.running()) {
    train_->set_status("Stop the current run before resuming another.");
    return false;
  }
  RunSpec spec;
  spec.kind = RunKind::kResume;
  spec.parent_run_id = run.id;
  spec.db_path = session_.db_path();
  try {
    // Killed after its final checkpoint: nothing to train, only to record.
    if (!finish_resume_if_done(spec).is_null()) {
      browser_->refresh();
      train_->set_status(QString("Run #%1 had reached its last step before its process ended; "
                                 "marked completed from its final checkpoint.")
                             .arg(run.id));
      return true;
    }
  } catch (const std::exception& e) {
    train_->set_status(QString("Cannot resume run #%1: %2").arg(run.id).arg(e.what()));
    return false;
  }
  max_steps_ = run.train_config.value("max_steps", int64_t(0));
  live_name_ = QString::fromStdString(run.name);
  // The parent's curves up to the checkpoint the new run continues from, so
  // the live charts continue them (drawn under the new run's id once known).
  std::optional<RunCurves> before;
  try {
    ExperimentStore store = ExperimentStore::open_readonly(session_.db_path());
    if (const auto ck = latest_checkpoint(store, run.id)) {
      RunCurves c = load_run_curves(store, run);
      RunCurves kept;
      for (size_t i = 0; i < c.size() && c.step[i] < ck->step; ++i) {
        kept.step.push_back(c.step[i]);
        kept.wall.push_back(c.wall[i]);
        kept.tokens.push_back(c.tokens[i]);
        kept.loss.push_back(c.loss[i]);
        kept.tokens_per_sec.push_back(c.tokens_per_sec[i]);
        kept.grad_norm.push_back(c.grad_norm[i]);
        kept.learning_rate.push_back(c.learning_rate[i]);
      }
      for (const auto& e : c.evals)
        if (e.first < ck->step) kept.evals.push_back(e);
      kept.name = live_name_;
      before = std::move(kept);
    }
  } catch (const std::exception&) {
    // No curves to show: the launcher reports what is wrong with the run.
  }
  launch(spec, QString("Resuming run #%1 from its newest checkpoint…").arg(run.id));
  resume_curves_ = std::move(before);  // after launch(): its poll() drains the previous run
  return true;
}

void MainWindow::launch(const RunSpec& spec, const QString& status) {
  poll();  // collect anything the previous run left
  resume_curves_.reset();
  ema_step_ms_ = 0;
  stopping_ = false;
  train_->set_progress(0, max_steps_, -1.0);
  charts_->clear();
  samples_->clear();
  steps_received_ = 0;
  live_run_id_ = 0;
  summary_.reset();
  push_sampling();
  session_.start(spec);
  train_->set_status(status);
  tabs_->setCurrentWidget(charts_);
  update_state();
}

void MainWindow::poll() {
  TrainingSession::Update u = session_.drain();
  if (u.horizon) max_steps_ = *u.horizon;
  if (u.run_id) {
    live_run_id_ = *u.run_id;
    if (resume_curves_) {
      resume_curves_->id = live_run_id_;
      charts_->set_run(std::move(*resume_curves_));
      resume_curves_.reset();
    }
    charts_->add_run(live_run_id_, live_name_);
    try {  // the run's own model (a fine-tune's is its base), for the FLOPs axis
      ExperimentStore store = ExperimentStore::open_readonly(session_.db_path());
      if (const auto run = store.get_run(live_run_id_))
        charts_->set_flops_per_token(live_run_id_, run_flops_per_token(*run));
    } catch (const std::exception&) {
      // no FLOPs axis for this run; the others still draw
    }
    browser_->refresh();
  }
  if (live_run_id_) {
    charts_->append_steps(live_run_id_, u.steps);
    charts_->append_evals(live_run_id_, u.evals);
  }
  for (const SampleResult& s : u.samples) samples_->add_sample(s);
  if (u.partial) samples_->show_partial(*u.partial);
  steps_received_ += int64_t(u.steps.size());
  for (const StepMetrics& m : u.steps)
    ema_step_ms_ = ema_step_ms_ > 0 ? 0.9 * ema_step_ms_ + 0.1 * m.step_time_ms : m.step_time_ms;
  if (!u.steps.empty()) {
    const StepMetrics& m = u.steps.back();
    train_->set_progress(
        m.step + 1, max_steps_,
        ema_step_ms_ > 0 ? double(max_steps_ - m.step - 1) * ema_step_ms_ / 1e3 : -1.0);
    train_->set_status(QString("Run #%1 · %2 step %3 / %4 · loss %5 · %6 tok/s")
                           .arg(live_run_id_)
                           .arg(session_.paused() ? "paused at" : "training")
                           .arg(m.step + 1)
                           .arg(max_steps_)
                           .arg(m.loss, 0, 'f', 4)
                           .arg(m.tokens_per_sec, 0, 'f', 0));
    if (m.step + 1 >= max_steps_ && !stopping_)
      train_->set_status(
          QString("Run #%1 · finishing: final evaluation and checkpoint…").arg(live_run_id_));
    if (stopping_)
      train_->set_status(QString("Run #%1 · stopping at step %2: final evaluation and checkpoint…")
                             .arg(live_run_id_)
                             .arg(m.step + 1));
  }
  if (!u.error.empty()) {
    samples_->set_busy(false);  // a failed session answers no pending sample
    train_->set_status(QString("Failed: %1").arg(QString::fromStdString(u.error)));
  }
  if (u.summary) {
    summary_ = u.summary;
    QString text = QString("Run #%1 %2 after %3 steps · train loss %4")
                       .arg(live_run_id_)
                       .arg(QString::fromLatin1(to_string(u.summary->status)))
                       .arg(u.summary->steps)
                       .arg(u.summary->final_train_loss, 0, 'f', 4);
    if (u.summary->val_loss)
      text += QString(" · eval loss %1").arg(*u.summary->val_loss, 0, 'f', 4);
    if (!u.summary->message.empty()) text += " · " + QString::fromStdString(u.summary->message);
    train_->set_status(text);
  }
  if (u.summary || !u.error.empty()) {
    browser_->refresh();
    refresh_finetune_bases();  // a finished run's checkpoint can be fine-tuned now
  }
  update_state();
}

void MainWindow::closeEvent(QCloseEvent* e) {
  if (remember_) save_settings();
  session_.join();  // a run in progress stops within one step
  e->accept();
}

}  // namespace bl
