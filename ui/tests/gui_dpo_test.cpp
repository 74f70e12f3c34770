// Preference tuning (DPO) and GRPO from the workbench, through the real window, engine
// and store: train a tiny run, write a pairs file, pick the run in the Run
// panel's "Preference tuning (DPO)" with the pairs as the data file, and find
// the DPO run recorded as the CLI's is (parent = the tuned run, "dpo" summary
// block with beta, "dpo" tag, the reward metrics). DPO excludes a fine-tune
// and a distillation; without a stored run it starts nothing.
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>
#include <algorithm>
#include <memory>

#include "main_window.h"
#include "samples/samples_panel.h"
#include "store/experiment_store.h"
#include "training/training_panel.h"

using namespace bl;

namespace {

Preset small_preset(int64_t steps) {
  Preset p = load_preset("gpt-tiny");
  p.model.n_layers = 1;
  p.model.block.d_model = 32;
  p.model.block.d_ff = 128;
  p.train.batch_size = 4;
  p.train.seq_len = 32;
  p.train.max_steps = steps;
  p.train.eval_interval = 0;
  p.train.eval_batches = 2;
  p.train.warmup_steps = 0;
  p.train.threads = 1;
  return p;
}

}  // namespace

class DpoTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db() const { return (dir_.path() + "/experiments.db").toStdString(); }

 private slots:
  void tune_a_stored_run_on_pairs() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    QCOMPARE(tp->dpo_reference_box()->count(), 0);  // nothing stored yet

    tp->set_dpo_enabled(true);
    tp->start_button()->click();
    QVERIFY2(tp->status_label()->text().contains("pick the run to tune"),
             qPrintable(tp->status_label()->text()));
    QCOMPARE(w.live_run_id(), int64_t(0));
    tp->set_dpo_enabled(false);

    // The run to tune: a short one on the bundled corpus, checkpointed at its end.
    w.load_preset(small_preset(4), "gpt-tiny");
    tp->set_run_name("base");
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t base_id = w.live_run_id();

    // Pairs in the corpus's characters.
    const QString pairs = dir_.path() + "/pairs.jsonl";
    {
      QFile f(pairs);
      QVERIFY(f.open(QIODevice::WriteOnly));
      for (int i = 0; i < 24; ++i)
        f.write(QString(R"({"prompt": "ROMEO:\nI %1 ", "chosen": "love thee", )"
                        R"("rejected": "eeht evol"})"
                        "\n")
                    .arg(QChar('a' + i))
                    .toUtf8());
    }
    tp->set_run_name("");
    tp->set_data_path(pairs);
    tp->set_finetune_enabled(true);
    tp->set_dpo_enabled(true);  // unchecks the fine-tune: one kind of run
    QVERIFY(!tp->finetune_group()->isChecked());
    tp->set_distill_enabled(true);
    QVERIFY(!tp->dpo_group()->isChecked());
    tp->set_dpo_enabled(true);
    QVERIFY(!tp->distill_group()->isChecked());
    QCOMPARE(tp->dpo_reference_box()->count(), 1);
    QVERIFY(tp->dpo_reference() != nullptr);
    QCOMPARE(tp->dpo_reference()->run_id, base_id);
    QCOMPARE(tp->dpo_beta(), 0.1);  // the default
    tp->dpo_beta_box()->setValue(0.25);
    tp->max_steps_box()->setValue(3);
    QVERIFY2(w.errors().empty(), w.errors().empty() ? "" : w.errors()[0].c_str());
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.live_run_id() != base_id && w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t id = w.live_run_id();

    ExperimentStore store = ExperimentStore::open_readonly(db());
    const auto run = store.get_run(id);
    QVERIFY(run.has_value());
    QCOMPARE(run->parent_run_id.value_or(0), base_id);
    QVERIFY(run->summary.contains("dpo"));
    QCOMPARE(run->summary["dpo"]["base_run"].get<int64_t>(), base_id);
    QCOMPARE(run->summary["dpo"]["beta"].get<double>(), 0.25);
    QVERIFY(std::find(run->tags.begin(), run->tags.end(), "dpo") != run->tags.end());
    QCOMPARE(run->dataset_path, pairs.toStdString());
    QCOMPARE(run->train_config["max_steps"].get<int64_t>(), int64_t(3));  // the panel's settings
    const auto names = store.metric_names(id);
    for (const char* m : {"dpo/reward_margin", "dpo/reward_accuracy", "dpo/chosen_reward"})
      QVERIFY2(std::find(names.begin(), names.end(), m) != names.end(), m);
    QCOMPARE(store.metrics(id, "dpo/reward_margin").size(), size_t(3));
  }

  // GRPO from the same panel: the "Reinforcement (GRPO)" box with a prompts
  // file, recorded with its reward and recipe.
  void tune_a_stored_run_with_grpo() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    w.load_preset(small_preset(4), "gpt-tiny");
    tp->set_run_name("grpo base");
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    const int64_t base_id = w.live_run_id();

    const QString prompts = dir_.path() + "/prompts.jsonl";
    {
      QFile f(prompts);
      QVERIFY(f.open(QIODevice::WriteOnly));
      for (int i = 0; i < 12; ++i)
        f.write(QString(R"({"prompt": "KING:\nWhat %1 ", "target": "say"})"
                        "\n")
                    .arg(QChar('a' + i))
                    .toUtf8());
    }
    tp->set_run_name("");
    tp->set_data_path(prompts);
    tp->set_dpo_enabled(true);
    tp->set_grpo_enabled(true);  // one kind of run at a time
    QVERIFY(!tp->dpo_group()->isChecked());
    QVERIFY(tp->grpo_model() != nullptr);
    QVERIFY(tp->select_grpo_model(base_id));
    tp->grpo_reward_edit()->setText("regex:^s");
    tp->grpo_group_size_box()->setValue(3);
    tp->grpo_new_tokens_box()->setValue(4);
    tp->max_steps_box()->setValue(2);
    QVERIFY2(w.errors().empty(), w.errors().empty() ? "" : w.errors()[0].c_str());
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.live_run_id() != base_id && w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t id = w.live_run_id();

    ExperimentStore store = ExperimentStore::open_readonly(db());
    const auto run = store.get_run(id);
    QVERIFY(run.has_value());
    QCOMPARE(run->parent_run_id.value_or(0), base_id);
    QVERIFY(run->summary.contains("grpo"));
    QCOMPARE(run->summary["grpo"]["reward"].get<std::string>(), std::string("regex:^s"));
    QCOMPARE(run->summary["grpo"]["group"].get<int64_t>(), int64_t(3));
    QCOMPARE(run->summary["grpo"]["max_new_tokens"].get<int64_t>(), int64_t(4));
    QVERIFY(std::find(run->tags.begin(), run->tags.end(), "grpo") != run->tags.end());
    QCOMPARE(store.metrics(id, "grpo/reward_mean").size(), size_t(2));
  }
};

QTEST_MAIN(DpoTest)
#include "gui_dpo_test.moc"
