// LoRA fine-tuning from the GUI, through the real window, engine and store:
// train a tiny base run (checkpointed at its end), pick it as the base of a
// fine-tune, see the engine's trainable-parameter count, train adapters over an
// NF4 base, and find the run linked to its base (parent, "lora" tag, summary
// block), its PEFT adapter on disk (also for a stopped run) and the lineage in
// the run browser.
#include <QCheckBox>
#include <QComboBox>
#include <QGroupBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTableView>
#include <QTemporaryDir>
#include <QTest>
#include <filesystem>
#include <memory>

#include "browser/run_browser.h"
#include "io/safetensors.h"
#include "lora/adapter_io.h"
#include "lora/finetune.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "samples/samples_panel.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"
#include "training/training_panel.h"
#include "run/launcher.h"
#include "training/training_session.h"

using namespace bl;

namespace {

/// gpt-tiny cut to 2 layers of width 64 on `threads` engine threads.
Preset small_preset(int64_t steps, int threads) {
  Preset p = load_preset("gpt-tiny");
  p.model.n_layers = 2;
  p.model.block.d_model = 64;
  p.model.block.d_ff = 256;
  p.train.batch_size = 4;
  p.train.seq_len = 32;
  p.train.max_steps = steps;
  p.train.eval_interval = 0;
  p.train.eval_batches = 2;
  p.train.warmup_steps = 0;
  p.train.threads = threads;
  return p;
}

}  // namespace

class LoraTest : public QObject {
  Q_OBJECT

  std::unique_ptr<QTemporaryDir> dir_;  // one per data row: each starts empty
  std::string db() const { return (dir_->path() + "/experiments.db").toStdString(); }

 private slots:
  // 2 threads: the engine's data-parallel path, with frozen base weights.
  void fine_tune_a_stored_run_data() {
    QTest::addColumn<int>("threads");
    QTest::newRow("1 thread") << 1;
    QTest::newRow("2 threads") << 2;
  }
  void fine_tune_a_stored_run() {
    QFETCH(int, threads);
    dir_ = std::make_unique<QTemporaryDir>();
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    w.samples_panel()->every_box()->setValue(0);
    TrainingPanel* tp = w.training_panel();
    QCOMPARE(tp->base_box()->count(), 0);  // nothing stored yet
    tp->set_finetune_enabled(true);
    QVERIFY(!tp->start_button()->isEnabled());  // no base to fine-tune
    QVERIFY(tp->errors_label()->text().contains("base run"));
    tp->set_finetune_enabled(false);
    QVERIFY(tp->start_button()->isEnabled());

    // The base: a short run, checkpointed when it completes.
    w.load_preset(small_preset(6, threads), "gpt-tiny");
    tp->set_run_name("base");
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t base_id = w.live_run_id();
    QCOMPARE(tp->base_box()->count(), 1);
    QCOMPARE(tp->base_box()->itemText(0), QString("#%1 base").arg(base_id));

    // The composer now shows a different (4-layer) architecture: a fine-tune ignores it.
    Preset other = small_preset(5, threads);
    other.model.n_layers = 4;
    w.load_preset(other, "gpt-tiny");
    tp->set_run_name("");
    tp->set_finetune_enabled(true);
    QVERIFY(tp->finetune_group()->toolTip().contains("ignored"));
    QCOMPARE(tp->finetune_base()->run_id, base_id);
    tp->rank_box()->setValue(4);
    tp->target_box("k")->setChecked(true);  // q, k, v
    tp->quantize_box()->setCurrentText("nf4");
    QVERIFY2(w.errors().empty(), w.errors().empty() ? "" : w.errors()[0].c_str());

    // The label shows the engine's count for the real base model.
    ExperimentStore reader = ExperimentStore::open_readonly(db());
    const auto ck = latest_checkpoint(reader, base_id);
    QVERIFY(ck.has_value());
    FinetuneSpec fs;
    fs.base_checkpoint = ck->path;
    fs.lora = {4, 16.0f, {"q", "k", "v"}};
    fs.quantize = "nf4";
    const Finetune built = build_finetune(fs);
    QVERIFY(tp->finetune_counts().has_value());
    QCOMPARE(tp->finetune_counts()->trainable, built.counts.trainable);
    QCOMPARE(tp->finetune_counts()->total, built.counts.total);
    // q 64->64, k and v 64->32 (gpt-tiny's kv heads) at rank 4, two layers, by hand:
    const int64_t kv = built.info.model.block.n_kv_heads.value_or(built.info.model.block.n_heads) *
                       (64 / built.info.model.block.n_heads);
    QCOMPARE(built.counts.trainable, 2 * 4 * ((64 + 64) + 2 * (64 + kv)));
    QVERIFY2(tp->trainable_label()->text().startsWith(trainable_text(built.counts)),
             qPrintable(tp->trainable_label()->text()));
    // Settings change the count live.
    tp->target_box("k")->setChecked(false);
    QVERIFY(tp->finetune_counts()->trainable < built.counts.trainable);
    tp->target_box("k")->setChecked(true);
    QCOMPARE(tp->finetune_counts()->trainable, built.counts.trainable);
    // A rank larger than a layer is an error that disables Start.
    tp->rank_box()->setValue(1000);
    QVERIFY(!tp->start_button()->isEnabled());
    QVERIFY(tp->errors_label()->text().contains("fine-tune"));
    tp->rank_box()->setValue(4);
    QVERIFY(tp->start_button()->isEnabled());

    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kCompleted);
    const int64_t id = w.live_run_id();
    QVERIFY(id != base_id);
    QCOMPARE(w.steps_received(), int64_t(5));
    QTRY_COMPARE(w.charts()->loss_plot()->point_count(0), 5);  // live charts as for any run
    // The fine-tuned model (NF4 base + adapters) samples after the run.
    w.samples_panel()->length_box()->setValue(20);
    w.samples_panel()->generate_button()->click();
    QTRY_COMPARE_WITH_TIMEOUT(w.samples_panel()->sample_count(), 1, 30000);
    QVERIFY(!w.samples_panel()->output()->toPlainText().contains("cannot sample"));

    ExperimentStore store = ExperimentStore::open_readonly(db());
    const auto run = store.get_run(id);
    QVERIFY(run.has_value());
    QTRY_COMPARE(store.samples(id).size(), size_t(1));
    QCOMPARE(run->parent_run_id.value_or(0), base_id);
    QVERIFY(std::find(run->tags.begin(), run->tags.end(), "lora") != run->tags.end());
    QCOMPARE(run->model_config["n_layers"].get<int64_t>(), int64_t(2));  // the base's model
    const nlohmann::json& l = run->summary["lora"];
    QCOMPARE(l["rank"].get<int64_t>(), int64_t(4));
    QCOMPARE(l["quantize"].get<std::string>(), std::string("nf4"));
    QCOMPARE(l["trainable_params"].get<int64_t>(), built.counts.trainable);
    QCOMPARE(l["base_checkpoint"].get<std::string>(), ck->path);
    const std::string adapter = run_adapter_dir(db(), id);
    QCOMPARE(l["adapter"].get<std::string>(), adapter);
    QVERIFY(std::filesystem::is_regular_file(adapter + "/adapter_model.safetensors"));
    QVERIFY(std::filesystem::is_regular_file(adapter + "/adapter_config.json"));
    const Adapter ad = read_adapter(adapter);
    QCOMPARE(ad.rank, int64_t(4));
    QCOMPARE(ad.layers.size(), size_t(6));
    // A fine-tune checkpoint (adapter tensors + trainer state + the spec) to resume from.
    const auto fck = latest_checkpoint(store, id);
    QVERIFY(fck.has_value());
    QCOMPARE(fck->step, int64_t(5));
    const CheckpointInfo fci = read_checkpoint_info(fck->path);
    QCOMPARE(fci.finetune["base_checkpoint"].get<std::string>(), ck->path);
    QCOMPARE(fci.finetune["quantize"].get<std::string>(), std::string("nf4"));
    QCOMPARE(read_safetensors(fck->path + "/model.safetensors").tensors.size(),
             size_t(12));  // 6 x (A, B)

    // Lineage in the browser; double-clicking the base selects it.
    RunBrowser* b = w.browser();
    b->refresh();
    QCOMPARE(b->cell(id, RunBrowser::kBase), QString("#%1").arg(base_id));
    QCOMPARE(b->cell(id, RunBrowser::kAdapter), QString("LoRA r4 q,k,v nf4"));
    QCOMPARE(b->cell(base_id, RunBrowser::kBase), QString());
    b->select_runs({id});
    const QAbstractItemModel* m = b->table()->model();
    QModelIndex base_cell;
    for (int r = 0; r < m->rowCount(); ++r)
      if (m->index(r, RunBrowser::kId).data().toString() == QString::number(id))
        base_cell = m->index(r, RunBrowser::kBase);
    QVERIFY(base_cell.isValid());
    emit b->table()->doubleClicked(base_cell);
    QCOMPARE(b->selected_ids(), std::vector<int64_t>{base_id});

    // A stopped fine-tune saves its adapter too.
    tp->max_steps_box()->setValue(1'000'000);
    tp->quantize_box()->setCurrentText("none");
    tp->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.steps_received() >= 3, 60000);
    {  // The spec is in the run row while it runs (a killed fine-tune can resume).
      auto live = ExperimentStore::open_readonly(db());
      const auto r = live.get_run(w.live_run_id());
      QVERIFY(r.has_value());
      QCOMPARE(r->summary["lora"]["adapter"].get<std::string>(),
               run_adapter_dir(db(), w.live_run_id()));
    }
    tp->stop_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    QCOMPARE(w.last_summary()->status, RunStatus::kStopped);
    QVERIFY(std::filesystem::is_regular_file(run_adapter_dir(db(), w.live_run_id()) +
                                             "/adapter_model.safetensors"));
    b->refresh();
    QCOMPARE(b->cell(w.live_run_id(), RunBrowser::kAdapter), QString("LoRA r4 q,k,v"));
  }
};

QTEST_MAIN(LoraTest)
#include "gui_lora_test.moc"
