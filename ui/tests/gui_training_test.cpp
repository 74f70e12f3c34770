// The training workflow through the real window, engine and store: start a
// 2-layer model, see chart points arrive, pause / step / sample / resume /
// stop, the run in the browser with the right status; invalid configs disable
// Start; the UI event loop stays responsive during a run, also with 20 stored
// runs overlaid in the run browser, one line each or grouped (mean ± std).
#include <QComboBox>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>
#include <algorithm>
#include <cmath>
#include <ctime>

#include "browser/run_browser.h"
#include "data/bpe_trainer.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "samples/samples_panel.h"
#include "store/experiment_store.h"
#include "training/training_panel.h"

using namespace bl;

namespace {

/// gpt-tiny cut to 2 layers of width 64: fast steps on one engine thread.
Preset small_preset() {
  Preset p = load_preset("gpt-tiny");
  p.model.n_layers = 2;
  p.model.block.d_model = 64;
  p.model.block.d_ff = 256;
  p.train.batch_size = 4;
  p.train.seq_len = 32;
  p.train.eval_interval = 20;
  p.train.eval_batches = 2;
  p.train.warmup_steps = 5;
  p.train.threads = 1;  // a core stays free for the UI
  return p;
}

/// A finished stored run of `steps` steps (as StoreLogger writes it).
int64_t write_stored_run(ExperimentStore& s, const std::string& name, double lr, int64_t seed,
                         int steps) {
  Preset p = load_preset("gpt-tiny");
  p.train.learning_rate = lr;
  p.train.seed = seed;
  RunRecord r;
  r.name = name;
  r.preset = "gpt-tiny";
  r.model_config = model_config_to_json(p.model);
  r.train_config = train_config_to_json(p.train);
  const int64_t id = s.create_run(r);
  for (int i = 0; i < steps; ++i) {
    const double wall = 1'700'000'000 + 0.05 * i, loss = 4.0 * std::exp(-i / 500.0) + 0.01 * seed;
    s.log_metric(id, i, wall, "loss", loss);
    s.log_metric(id, i, wall, "learning_rate", lr);
    s.log_metric(id, i, wall, "grad_norm", 1.0 + 0.1 * seed);
    s.log_metric(id, i, wall, "tokens_per_sec", 9000 + seed);
    s.log_metric(id, i, wall, "step_time_ms", 50);
    s.log_metric(id, i, wall, "tokens_seen", 512.0 * (i + 1));
    if ((i + 1) % 100 == 0) s.log_eval(id, i, "eval_loss", loss + 0.05);
  }
  s.finish_run(id, RunStatus::kCompleted, {{"best_val_loss", 1.5}, {"final_train_loss", 1.4}});
  return id;
}

/// Runs the event loop for `ms` with a 5 ms timer: the largest gap between
/// its ticks is the event-loop stall. A gap is the UI thread's own work (CPU
/// time it used in the gap) plus time the OS ran other processes instead: on
/// a loaded 2-core machine (ctest -j2, builds) the second can exceed 50 ms
/// without any stall of ours. So callers limit the UI thread's CPU time within
/// a gap, with a looser bound on the wall-clock gap.
struct Stall {
  qint64 worst_ms = 0;
  double worst_busy_ms = 0;
};
Stall measure_stall(int ms) {
  QTimer tick;
  tick.setInterval(5);
  QElapsedTimer clock;
  auto thread_cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
  };
  qint64 last = -1;
  double last_cpu = 0;
  Stall out;
  QObject::connect(&tick, &QTimer::timeout, [&] {
    const qint64 now = clock.elapsed();
    const double cpu = thread_cpu_ms();
    if (last >= 0) {
      out.worst_ms = std::max(out.worst_ms, now - last);
      out.worst_busy_ms = std::max(out.worst_busy_ms, cpu - last_cpu);
    }
    last = now;
    last_cpu = cpu;
  });
  clock.start();
  tick.start();
  // A real event loop, as in the application (QTest::qWait sleeps 10 ms
  // between its processEvents calls, which would be measured as stalls).
  QEventLoop loop;
  QTimer::singleShot(ms, &loop, &QEventLoop::quit);
  loop.exec();
  return out;
}

}  // namespace

class TrainingTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db() const { return (dir_.path() + "/experiments.db").toStdString(); }

 private slots:
  void pause_step_resume_stop_recorded() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    Preset p = small_preset();
    p.train.max_steps = 1'000'000;  // runs until stopped
    w.load_preset(p, "gpt-tiny");
    TrainingPanel* tp = w.training_panel();
    w.samples_panel()->every_box()->setValue(0);  // only on-demand samples here
    QVERIFY(w.errors().empty());
    QVERIFY(tp->start_button()->isEnabled());
    QVERIFY(!tp->pause_button()->isEnabled());
    tp->start_button()->click();
    QCOMPARE(tp->state(), TrainingPanel::State::kRunning);
    QVERIFY(!tp->start_button()->isEnabled());
    QVERIFY(!tp->max_steps_box()->isEnabled());  // the form is locked during a run

    // Chart points arrive through the 20 Hz drain.
    QTRY_VERIFY_WITH_TIMEOUT(w.charts()->loss_plot()->point_count(0) >= 10, 60000);
    QVERIFY(w.live_run_id() > 0);
    QTRY_VERIFY(w.charts()->throughput_plot()->point_count(0) >= 10);
    QVERIFY(w.charts()->lr_plot()->point_count(0) >= 10);
    QTRY_VERIFY_WITH_TIMEOUT(w.charts()->loss_plot()->point_count(1) >= 1, 60000);  // eval

    // Pause: the step count settles.
    tp->pause_button()->click();
    QCOMPARE(tp->state(), TrainingPanel::State::kPaused);
    QVERIFY(tp->step_button()->isEnabled() && tp->resume_button()->isEnabled());
    QTest::qWait(400);
    const int64_t paused_at = w.steps_received();
    QTest::qWait(400);
    QCOMPARE(w.steps_received(), paused_at);

    // Step: exactly one more.
    tp->step_button()->click();
    QTRY_COMPARE(w.steps_received(), paused_at + 1);
    QTest::qWait(300);
    QCOMPARE(w.steps_received(), paused_at + 1);
    QCOMPARE(tp->state(), TrainingPanel::State::kPaused);

    // A sample while paused is generated on the worker, between steps.
    w.samples_panel()->length_box()->setValue(40);
    QVERIFY(w.samples_panel()->generate_button()->isEnabled());
    w.samples_panel()->generate_button()->click();
    QVERIFY(w.samples_panel()->busy());  // a moving bar, no second request meanwhile
    QVERIFY(!w.samples_panel()->generate_button()->isEnabled());
    QTRY_COMPARE_WITH_TIMEOUT(w.samples_panel()->sample_count(), 1, 30000);
    QVERIFY(!w.samples_panel()->busy());
    QVERIFY(w.samples_panel()->generate_button()->isEnabled());
    const QString text = w.samples_panel()->output()->toPlainText();
    QVERIFY2(text.contains(QString("step %1 ").arg(paused_at + 1)), qPrintable(text));
    QVERIFY(text.contains("ROMEO:"));
    QCOMPARE(w.steps_received(), paused_at + 1);  // sampling did not step

    // Resume: steps flow again.
    tp->resume_button()->click();
    QCOMPARE(tp->state(), TrainingPanel::State::kRunning);
    QTRY_VERIFY(w.steps_received() > paused_at + 5);

    // The progress bar counts steps and estimates the time left.
    QTRY_VERIFY(tp->progress_bar()->isVisible());
    QCOMPARE(tp->progress_bar()->maximum(), 1'000'000);
    QVERIFY(tp->progress_bar()->value() > paused_at);
    QVERIFY2(tp->progress_bar()->format().contains("ETA"),
             qPrintable(tp->progress_bar()->format()));

    // Stop: every button waits while the run finishes, then idle, recorded as stopped.
    tp->stop_button()->click();
    QCOMPARE(tp->state(), TrainingPanel::State::kStopping);
    QVERIFY(!tp->stop_button()->isEnabled() && !tp->pause_button()->isEnabled() &&
            !tp->start_button()->isEnabled());
    QVERIFY(tp->status_label()->text().contains("Stopping"));
    QTRY_COMPARE_WITH_TIMEOUT(tp->state(), TrainingPanel::State::kIdle, 30000);
    QTRY_VERIFY(w.last_summary().has_value());
    QCOMPARE(w.last_summary()->status, RunStatus::kStopped);
    QVERIFY(tp->start_button()->isEnabled());
    const int64_t id = w.live_run_id();
    w.browser()->refresh();
    QCOMPARE(w.browser()->cell(id, RunBrowser::kStatus), QString("stopped"));
    QCOMPARE(w.browser()->cell(id, RunBrowser::kPreset), QString("gpt-tiny"));

    ExperimentStore store = ExperimentStore::open_readonly(db());
    const auto run = store.get_run(id);
    QVERIFY(run.has_value());
    QCOMPARE(run->status, RunStatus::kStopped);
    QCOMPARE(run->train_config["threads"].get<int64_t>(), int64_t(1));
    QCOMPARE(run->model_config["n_layers"].get<int64_t>(), int64_t(2));
    QVERIFY(!run->dataset_sha256.empty());
    QCOMPARE(int64_t(store.metrics(id, "loss").size()), w.last_summary()->steps);
    QCOMPARE(w.steps_received(), w.last_summary()->steps);
    QCOMPARE(store.samples(id).size(), size_t(1));

    // After the run the trained model can still be sampled.
    QVERIFY(w.samples_panel()->generate_button()->isEnabled());
    w.samples_panel()->generate_button()->click();
    QTRY_COMPARE_WITH_TIMEOUT(w.samples_panel()->sample_count(), 2, 30000);
  }

  // The tokenizer chooser: bytes and a byte-level BPE folder (trained here
  // as `tokenizer train` would) reach the run record and size the vocabulary;
  // BPE without a folder is refused before anything starts.
  void tokenizer_choice_reaches_the_run() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    Preset p = small_preset();
    p.train.max_steps = 4;
    p.train.warmup_steps = 1;
    p.train.eval_interval = 0;
    w.load_preset(p, "gpt-tiny");
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    QCOMPARE(tp->tokenizer_spec(), std::string("char"));  // the default, as before
    QVERIFY(!tp->bpe_dir_edit()->isVisible());

    // Starts a run and waits for it to complete (QTRY_* return on failure:
    // the record stays empty and the QVERIFY below fails).
    auto run_once = [&](std::optional<RunRecord>& out) {
      QVERIFY2(w.errors().empty(), w.errors().empty() ? "" : w.errors().front().c_str());
      tp->start_button()->click();
      QCOMPARE(tp->state(), TrainingPanel::State::kRunning);
      QTRY_COMPARE_WITH_TIMEOUT(tp->state(), TrainingPanel::State::kIdle, 60000);
      // The panel can be idle a poll before the run's summary is drained.
      QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 30000);
      const auto summary = w.last_summary();
      QVERIFY2(summary->status == RunStatus::kCompleted, summary->message.c_str());
      out = ExperimentStore::open_readonly(db()).get_run(w.live_run_id());
    };
    std::optional<RunRecord> byte_run, bpe_run;

    tp->tokenizer_box()->setCurrentIndex(tp->tokenizer_box()->findData("byte"));
    QCOMPARE(tp->tokenizer_spec(), std::string("byte"));
    run_once(byte_run);
    QVERIFY(byte_run.has_value());
    QCOMPARE(byte_run->tokenizer["type"].get<std::string>(), std::string("byte"));
    QCOMPARE(byte_run->model_config["vocab_size"].get<int64_t>(), int64_t(256));

    tp->tokenizer_box()->setCurrentIndex(tp->tokenizer_box()->findData("bpe"));
    QVERIFY(tp->bpe_dir_edit()->isVisible());
    const int64_t before = w.live_run_id();
    tp->start_button()->click();  // no folder yet
    QCOMPARE(tp->state(), TrainingPanel::State::kIdle);
    QVERIFY2(tp->status_label()->text().contains("tokenizer train"),
             qPrintable(tp->status_label()->text()));
    QCOMPARE(w.live_run_id(), before);

    std::string corpus;
    for (int i = 0; i < 200; ++i) corpus += "to be, or not to be, that is the question. ";
    const std::string bpe_dir = (dir_.path() + "/bpe").toStdString();
    const BpeTokenizer bpe = train_bpe(corpus, 300);  // as many merges as the text has
    bpe.save(bpe_dir);
    tp->bpe_dir_edit()->setText(QString::fromStdString(bpe_dir));
    QCOMPARE(tp->tokenizer_spec(), "bpe:" + bpe_dir);
    run_once(bpe_run);
    QVERIFY(bpe_run.has_value());
    QCOMPARE(bpe_run->tokenizer["type"].get<std::string>(), std::string("bpe"));
    QCOMPARE(bpe_run->model_config["vocab_size"].get<int64_t>(), bpe.vocab_size());
    QVERIFY(bpe.vocab_size() > 256);
  }

  // A run stopped early resumes from the Runs tab as train --resume would: a
  // new run linked to it continues from its checkpoint to the step budget,
  // and the live charts continue the stopped run's curves.
  void stopped_run_resumes_from_the_browser() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    Preset p = small_preset();
    p.train.max_steps = 400;
    w.load_preset(p, "gpt-tiny");
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    // On a loaded machine the engine can finish all 400 steps before the UI
    // thread's Stop lands; such a run completed, so start another (3 tries).
    int64_t stopped = 0, done = 400;
    for (int attempt = 0; attempt < 3 && done >= 400; ++attempt) {
      tp->start_button()->click();
      QTRY_VERIFY_WITH_TIMEOUT(w.steps_received() >= 5, 60000);
      tp->stop_button()->click();
      QTRY_COMPARE_WITH_TIMEOUT(tp->state(), TrainingPanel::State::kIdle, 30000);
      stopped = w.live_run_id();
      done = w.steps_received();
    }
    QVERIFY(done < 400);

    RunBrowser* b = w.browser();
    b->refresh();
    b->select_runs({stopped});
    QVERIFY(b->resume_button()->isEnabled());
    b->resume_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.live_run_id() > stopped, 30000);
    QTRY_COMPARE_WITH_TIMEOUT(tp->state(), TrainingPanel::State::kIdle, 120000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t resumed = w.live_run_id();
    ExperimentStore store = ExperimentStore::open_readonly(db());
    const RunRecord r = *store.get_run(resumed);
    QCOMPARE(r.parent_run_id, std::optional<int64_t>(stopped));
    QCOMPARE(r.preset, std::string("gpt-tiny"));
    const MetricSeries loss = store.metrics(resumed, "loss");
    QCOMPARE(loss.steps.front(), done);         // from the stop's checkpoint ...
    QCOMPARE(loss.steps.back(), int64_t(399));  // ... to the budget
    // The live chart holds the stopped run's steps and the resumed ones: all 400.
    QTRY_COMPARE(w.charts()->curves(resumed)->size(), size_t(400));
    // A completed run offers no resume.
    b->refresh();
    b->select_runs({resumed});
    QVERIFY(!b->resume_button()->isEnabled());
  }

  // The partial text of a sample being generated is replaced, never duplicated.
  void samples_panel_replaces_the_partial_text() {
    SamplesPanel panel;
    SampleResult a{7, 3, "ROMEO:", " done", 0.8, true, 5, 0.9};
    SampleResult b{7, 4, "JULIET:", "x", 0.8, true};
    panel.show_partial(b);  // into an empty panel
    QCOMPARE(panel.partial_text(), QString("x"));
    panel.add_sample(a);
    QCOMPARE(panel.partial_text(), QString());
    b.text = "xy";
    panel.show_partial(b);
    b.text = "xyz";
    panel.show_partial(b);
    QVERIFY(panel.output()->toPlainText().endsWith("JULIET:xyz"));
    QVERIFY(panel.output()->toPlainText().contains("(generating…)"));
    b.text = "xyz!";
    panel.add_sample(b);
    const QString text = panel.output()->toPlainText();
    QVERIFY2(!text.contains("generating"), qPrintable(text));
    QCOMPARE(text.count("── run #7"), 2);
    QVERIFY(text.contains("ROMEO: done"));
    QVERIFY2(text.contains("── run #7 · step 3 · temperature 0.80 · top-k 5 · top-p 0.90 ──"),
             qPrintable(text));
    QVERIFY(text.contains("JULIET:xyz!"));
    QCOMPARE(panel.sample_count(), 2);
  }

  // A long sample appears token by token in the Samples tab while it is generated.
  void samples_stream_while_generating() {
    MainWindow w("gpt-tiny", db());
    w.show();
    Preset p = small_preset();
    p.train.max_steps = 1'000'000;
    w.load_preset(p, "gpt-tiny");
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.steps_received() >= 2, 60000);
    tp->pause_button()->click();
    w.samples_panel()->length_box()->setValue(1500);
    w.samples_panel()->generate_button()->click();
    int partial_seen = 0;
    QElapsedTimer t;
    t.start();
    while (w.samples_panel()->sample_count() == 0 && t.elapsed() < 60000) {
      QTest::qWait(2);
      if (!w.samples_panel()->partial_text().isEmpty()) ++partial_seen;
    }
    QCOMPARE(w.samples_panel()->sample_count(), 1);
    QVERIFY2(partial_seen > 0, "no partial text was shown before the sample completed");
    QVERIFY(w.samples_panel()->output()->toPlainText().contains(
        QString("── run #%1 · step").arg(w.live_run_id())));
    QCOMPARE(w.samples_panel()->partial_text(), QString());
    tp->stop_button()->click();
    QTRY_COMPARE_WITH_TIMEOUT(tp->state(), TrainingPanel::State::kIdle, 30000);
  }

  void completed_run_and_automatic_samples() {
    MainWindow w("gpt-tiny", db());
    Preset p = small_preset();
    p.train.max_steps = 30;
    w.load_preset(p, "gpt-tiny");
    w.training_panel()->set_run_name("short");
    w.samples_panel()->every_box()->setValue(10);
    w.samples_panel()->length_box()->setValue(20);
    w.training_panel()->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 120000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    QCOMPARE(w.steps_received(), int64_t(30));
    QTRY_COMPARE(w.samples_panel()->sample_count(), 3);  // steps 10, 20, 30
    w.browser()->refresh();
    QCOMPARE(w.browser()->cell(w.live_run_id(), RunBrowser::kStatus), QString("completed"));
    QCOMPARE(w.browser()->cell(w.live_run_id(), RunBrowser::kName), QString("short"));
    QVERIFY(w.browser()->cell(w.live_run_id(), RunBrowser::kBestEval) != "—");
  }

  void invalid_config_disables_start() {
    MainWindow w("gpt-tiny", db());
    TrainingPanel* tp = w.training_panel();
    QVERIFY(tp->start_button()->isEnabled());
    QVERIFY(tp->errors_label()->isHidden());
    tp->seq_len_box()->setValue(4096);  // longer than the model's max_seq_len (128)
    QVERIFY(!w.errors().empty());
    QVERIFY(!tp->start_button()->isEnabled());
    QVERIFY(!tp->errors_label()->isHidden());
    QVERIFY(tp->errors_label()->text().contains("seq_len"));
    tp->start_button()->click();  // disabled: nothing starts
    QVERIFY(!w.session().running());
    tp->seq_len_box()->setValue(64);
    QVERIFY(tp->start_button()->isEnabled());

    tp->data_edit()->setText(dir_.path() + "/missing.txt");
    emit tp->data_edit()->editingFinished();
    QVERIFY(!tp->start_button()->isEnabled());
    QVERIFY(tp->errors_label()->text().contains("does not exist"));
  }

  void ui_stays_responsive_during_a_run() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    Preset p = small_preset();
    p.train.max_steps = 1'000'000;
    w.load_preset(p, "gpt-tiny");
    w.training_panel()->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.steps_received() >= 5, 60000);
    QVERIFY(w.tabs()->currentWidget() == w.charts());  // the charts are drawn meanwhile

    const int64_t before = w.steps_received();
    const Stall stall = measure_stall(3000);
    const qint64 worst = stall.worst_ms;
    const double worst_busy = stall.worst_busy_ms;
    const int64_t steps = w.steps_received() - before;
    w.training_panel()->stop_button()->click();
    QTRY_COMPARE_WITH_TIMEOUT(w.training_panel()->state(), TrainingPanel::State::kIdle, 30000);
    qInfo(
        "event loop: worst gap %lld ms (UI thread busy %.1f ms of it at most) over 3 s while "
        "%lld steps arrived",
        worst, worst_busy, (long long)steps);
    QVERIFY2(steps > 20, "training must have progressed during the measurement");
    QVERIFY2(worst_busy < 50,
             qPrintable(QString("UI thread busy %1 ms in one gap").arg(worst_busy)));
    QVERIFY2(worst < 250, qPrintable(QString("worst gap %1 ms").arg(worst)));
  }

  // 20 stored runs of 2000 steps (4 configs x 5 seeds) and the live run
  // compared in the run browser while training: one line per run, then
  // grouped by config except seed (the live run's group re-aggregated as it grows).
  void ui_stays_responsive_with_20_runs_overlaid() {
    const std::string db20 = (dir_.path() + "/overlay.db").toStdString();
    {
      ExperimentStore s(db20);
      for (int k = 0; k < 4; ++k)
        for (int seed = 1; seed <= 5; ++seed)
          write_stored_run(s, "lr " + std::to_string(k + 1) + "e-3 seed " + std::to_string(seed),
                           (k + 1) * 1e-3, seed, 2000);
      s.flush();
    }
    MainWindow w("gpt-tiny", db20);
    w.resize(1200, 800);
    w.show();
    Preset p = small_preset();
    p.train.max_steps = 1'000'000;
    w.load_preset(p, "gpt-tiny");
    w.training_panel()->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.steps_received() >= 5, 60000);
    RunBrowser* b = w.browser();
    b->refresh();
    w.tabs()->setCurrentWidget(b);
    QCOMPARE(b->visible_rows(), 21);
    b->select_runs(b->visible_ids());
    QCOMPARE(b->charts()->run_ids().size(), size_t(21));
    QCOMPARE(b->charts()->loss_plot()->series_count(), 42);  // train + eval per run

    // Steady state: the one-off drawing of the newly shown runs (a user's
    // click) happens before the measurement.
    b->charts()->redraw_now();
    QTest::qWait(300);
    const int64_t before = w.steps_received();
    const Stall lines = measure_stall(3000);
    b->set_grouping({.by = GroupSpec::By::kConfigExceptSeed});
    QCOMPARE(b->charts()->groups().size(), size_t(5));  // 4 stored configs + the live run's
    QCOMPARE(b->charts()->loss_plot()->band_count(), 5);
    const int64_t live_points = b->charts()->loss_plot()->point_count(8);  // the live group's mean
    b->charts()->redraw_now();
    QTest::qWait(300);
    const Stall grouped = measure_stall(3000);
    const int64_t steps = w.steps_received() - before;
    b->charts()->redraw_now();
    const int64_t live_after = b->charts()->loss_plot()->point_count(8);
    w.training_panel()->stop_button()->click();
    QTRY_COMPARE_WITH_TIMEOUT(w.training_panel()->state(), TrainingPanel::State::kIdle, 30000);
    qInfo(
        "20 runs + live run overlaid: worst gap %lld ms (UI busy %.1f ms) one line per run, %lld "
        "ms (UI busy %.1f ms) grouped; %lld steps arrived",
        lines.worst_ms, lines.worst_busy_ms, grouped.worst_ms, grouped.worst_busy_ms,
        (long long)steps);
    QVERIFY2(steps > 20, "training must have progressed during the measurement");
    QVERIFY2(live_after > live_points,  // the browser's poll grew the live group's mean
             qPrintable(QString("%1 -> %2 points").arg(live_points).arg(live_after)));
    for (const Stall& st : {lines, grouped}) {
      QVERIFY2(st.worst_busy_ms < 50,
               qPrintable(QString("UI thread busy %1 ms in one gap").arg(st.worst_busy_ms)));
      QVERIFY2(st.worst_ms < 250, qPrintable(QString("worst gap %1 ms").arg(st.worst_ms)));
    }
  }
};

QTEST_MAIN(TrainingTest)
#include "gui_training_test.moc"
