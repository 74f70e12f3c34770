// One run launcher for the CLI and the workbench: the same RunSpec (a fresh
// run, a QLoRA fine-tune) trained by the blocklab-cli process and by the
// workbench's TrainingSession gives the same run record and the same losses; a
// run of one resumes in the other; an invalid spec fails in both before the
// corpus (a FIFO) is read; the record names the preset the composer's model
// came from.
#include <sys/stat.h>

#include <QPushButton>
#include <QTemporaryDir>
#include <QTest>
#include <QUndoStack>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "arch/arch_panel.h"
#include "cli_support.h"
#include "main_window.h"
#include "run/launcher.h"
#include "store/experiment_store.h"
#include "training/training_panel.h"
#include "training/training_session.h"

using namespace bl;

namespace {

using test::run_cli;

/// The CLI arguments that describe `s` (the fields this test uses).
std::string cli_args(const RunSpec& s) {
  std::ostringstream a;
  a << "train --quiet --db '" << s.db_path << "'";
  if (s.kind == RunKind::kResume) a << " --resume " << *s.parent_run_id;
  if (s.kind == RunKind::kFinetune) {
    const LoraSpec& l = s.finetune.lora;
    a << " --init-from " << *s.finetune.base_run_id << " --lora rank=" << l.rank
      << ",alpha=" << l.alpha << ",targets=" << l.targets[0];
    for (size_t i = 1; i < l.targets.size(); ++i) a << "," << l.targets[i];
    if (!s.finetune.quantize.empty()) a << " --quantize " << s.finetune.quantize;
    a << " --adapter-out '" << s.finetune.adapter_out << "'";
  }
  if (!s.preset_name.empty()) a << " --preset " << s.preset_name;
  if (!s.data_path.empty()) a << " --data '" << s.data_path << "'";
  for (const std::string& set : s.set) a << " --set " << set;
  if (s.train.max_steps) a << " --steps " << *s.train.max_steps;
  if (s.train.threads) a << " --threads " << *s.train.threads;
  if (s.train.warmup_steps) a << " --warmup " << *s.train.warmup_steps;
  if (s.train.batch_size) a << " --batch-size " << *s.train.batch_size;
  if (s.train.seq_len) a << " --seq-len " << *s.train.seq_len;
  return a.str();
}

/// Trains `s` on a TrainingSession (the workbench's worker) and returns the
/// run id (0 if it failed; `error` receives why).
int64_t train_in_session(const RunSpec& s, std::string* error = nullptr) {
  TrainingSession session(s.db_path);
  session.start(s);
  int64_t id = 0;
  for (int i = 0; i < 6000; ++i) {
    const TrainingSession::Update u = session.drain();
    if (u.run_id) id = *u.run_id;
    if (!u.error.empty() && error) *error = u.error;
    if (!u.error.empty() && !error) qWarning("session failed: %s", u.error.c_str());
    if (u.summary || !u.error.empty()) break;
    QTest::qWait(20);
  }
  session.join();
  return id;
}

int64_t newest_run(const std::string& db) {
  int64_t id = 0;
  for (const RunRecord& r : ExperimentStore::open_readonly(db).list_runs()) id = std::max(id, r.id);
  return id;
}

}  // namespace

class LauncherTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string path(const char* f) const { return (dir_.path() + "/" + f).toStdString(); }

  RunSpec spec() const {
    RunSpec s;
    s.preset_name = "gpt-tiny";
    s.set = {"model.n_layers=2", "model.block.d_model=64", "model.block.d_ff=128",
             "train.eval_interval=4", "train.eval_batches=2"};
    s.train.max_steps = 8;
    s.train.warmup_steps = 2;
    s.train.batch_size = 4;
    s.train.seq_len = 32;
    s.train.threads = 2;
    s.data_path = path("corpus.txt");
    s.db_path = path("experiments.db");
    return s;
  }

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    std::ifstream in(resource_dir() + "/data/tinyshakespeare.txt");
    std::string text(30000, '\0');
    in.read(text.data(), std::streamsize(text.size()));
    std::ofstream(path("corpus.txt")) << text;
  }

  void same_spec_same_record_and_losses_from_cli_and_workbench() {
    const RunSpec s = spec();
    const test::CliResult cli = run_cli(cli_args(s));
    QVERIFY2(cli.exit_code == 0, cli.out.c_str());
    const int64_t cli_id = newest_run(s.db_path);
    const int64_t gui_id = train_in_session(s);
    QVERIFY(gui_id > cli_id);

    ExperimentStore store = ExperimentStore::open_readonly(s.db_path);
    const RunRecord a = *store.get_run(cli_id), b = *store.get_run(gui_id);
    QCOMPARE(b.status, RunStatus::kCompleted);
    QCOMPARE(a.status, RunStatus::kCompleted);
    QCOMPARE(b.model_config.dump(), a.model_config.dump());
    QCOMPARE(b.train_config.dump(), a.train_config.dump());
    QCOMPARE(b.preset, a.preset);
    QCOMPARE(b.preset, std::string("gpt-tiny"));
    QCOMPARE(b.name, a.name);
    QCOMPARE(b.tokenizer.dump(), a.tokenizer.dump());
    QCOMPARE(b.dataset_path, a.dataset_path);
    QCOMPARE(b.dataset_size, a.dataset_size);
    QCOMPARE(b.dataset_sha256, a.dataset_sha256);
    QCOMPARE(b.param_count, a.param_count);
    const MetricSeries la = store.metrics(cli_id, "loss"), lb = store.metrics(gui_id, "loss");
    QCOMPARE(la.size(), size_t(8));
    QCOMPARE(lb.steps, la.steps);
    QCOMPARE(lb.values, la.values);  // bit-identical at the same thread count
    QCOMPARE(store.evals(gui_id).size(), store.evals(cli_id).size());
  }

  void a_run_of_one_resumes_in_the_other() {
    RunSpec s = spec();
    s.train.max_steps = 4;
    const int64_t gui_id = train_in_session(s);
    QVERIFY(gui_id > 0);
    RunSpec r;
    r.kind = RunKind::kResume;
    r.parent_run_id = gui_id;
    r.db_path = s.db_path;
    r.train.max_steps = 6;
    const test::CliResult cli = run_cli(cli_args(r));
    QVERIFY2(cli.exit_code == 0, cli.out.c_str());
    const int64_t cli_resume = newest_run(s.db_path);

    const test::CliResult cli_run = run_cli(cli_args(s));
    QVERIFY2(cli_run.exit_code == 0, cli_run.out.c_str());
    r.parent_run_id = newest_run(s.db_path);
    const int64_t gui_resume = train_in_session(r);

    ExperimentStore store = ExperimentStore::open_readonly(s.db_path);
    for (const auto& [resumed, parent] :
         {std::pair{cli_resume, gui_id}, std::pair{gui_resume, *r.parent_run_id}}) {
      const RunRecord run = *store.get_run(resumed);
      QCOMPARE(run.status, RunStatus::kCompleted);
      QCOMPARE(run.parent_run_id, std::optional<int64_t>(parent));
      QCOMPARE(store.metrics(resumed, "loss").steps, (std::vector<int64_t>{4, 5}));
    }
    // Both resumed the same 4-step run (same spec): the same two losses.
    QCOMPARE(store.metrics(gui_resume, "loss").values, store.metrics(cli_resume, "loss").values);
  }

  void same_finetune_from_cli_and_workbench() {
    RunSpec base = spec();
    base.train.max_steps = 2;
    const int64_t base_id = train_in_session(base);
    RunSpec f;
    f.kind = RunKind::kFinetune;
    f.finetune.base_run_id = base_id;
    f.finetune.lora.rank = 4;
    f.finetune.lora.alpha = 8;
    f.finetune.quantize = "nf4";
    f.finetune.adapter_out = path("adapter-cli");
    f.train.max_steps = 4;
    f.train.threads = 2;
    f.data_path = base.data_path;
    f.db_path = base.db_path;
    const test::CliResult cli = run_cli(cli_args(f));
    QVERIFY2(cli.exit_code == 0, cli.out.c_str());
    const int64_t cli_id = newest_run(f.db_path);
    f.finetune.adapter_out = path("adapter-gui");
    const int64_t gui_id = train_in_session(f);

    ExperimentStore store = ExperimentStore::open_readonly(f.db_path);
    const RunRecord a = *store.get_run(cli_id), b = *store.get_run(gui_id);
    QCOMPARE(b.status, RunStatus::kCompleted);
    QCOMPARE(b.parent_run_id, std::optional<int64_t>(base_id));
    QCOMPARE(a.parent_run_id, b.parent_run_id);
    QCOMPARE(b.model_config.dump(), a.model_config.dump());
    QCOMPARE(b.train_config.dump(), a.train_config.dump());
    QCOMPARE(b.tokenizer.dump(), a.tokenizer.dump());
    QCOMPARE(b.dataset_sha256, a.dataset_sha256);
    QCOMPARE(b.name, a.name);
    QCOMPARE(b.tags, a.tags);
    nlohmann::json la = a.summary["lora"], lb = b.summary["lora"];
    QCOMPARE(lb["adapter"].get<std::string>(), path("adapter-gui"));
    la.erase("adapter");
    lb.erase("adapter");
    QCOMPARE(lb.dump(), la.dump());
    QCOMPARE(store.metrics(gui_id, "loss").values, store.metrics(cli_id, "loss").values);
  }

  void invalid_spec_fails_before_reading_in_both_paths() {
    // The corpus is a FIFO: reading it would block both paths forever.
    const std::string fifo = path("corpus.fifo");
    QCOMPARE(mkfifo(fifo.c_str(), 0600), 0);
    RunSpec s = spec();
    s.db_path = path("invalid.db");
    s.data_path = fifo;
    s.set.push_back("model.block.d_model=1000000000");
    const test::CliResult cli =
        run_cli("train --quiet --db '" + s.db_path + "' --preset gpt-tiny --data '" + fifo +
                "' --set model.block.d_model=1000000000");
    QCOMPARE(cli.exit_code, 1);
    QVERIFY2(cli.out.find("model.block.d_model (1000000000) must be <= 65536") != std::string::npos,
             cli.out.c_str());
    std::string error;
    QCOMPARE(train_in_session(s, &error), int64_t(0));
    QVERIFY2(error.find("model.block.d_model (1000000000) must be <= 65536") != std::string::npos,
             error.c_str());
    s.set.pop_back();  // valid config: now the FIFO itself is refused, unread
    QCOMPARE(train_in_session(s, &error), int64_t(0));
    QVERIFY2(error.find("is not a regular file") != std::string::npos, error.c_str());
    QVERIFY(ExperimentStore::open_readonly(s.db_path).list_runs().empty());
  }

  void record_names_the_preset_chosen_in_the_composer() {
    const std::string db = path("composer.db");
    MainWindow w("gpt-tiny", db);
    Preset p = load_preset("gpt-tiny");
    p.train.batch_size = 2;
    p.train.seq_len = 16;
    p.train.max_steps = 2;
    p.train.warmup_steps = 0;
    p.train.eval_interval = 0;
    p.train.threads = 1;
    w.load_preset(p, "gpt-tiny");
    w.training_panel()->set_data_path(QString::fromStdString(path("corpus.txt")));
    QVERIFY(w.arch_panel()->load_preset_model("llama-tiny"));  // the composer's Presets menu
    QCOMPARE(w.arch_panel()->preset_name(), std::string("llama-tiny"));
    QVERIFY2(w.errors().empty(), w.errors().empty() ? "" : w.errors()[0].c_str());
    w.training_panel()->start_button()->click();
    QTRY_VERIFY_WITH_TIMEOUT(w.last_summary().has_value(), 60000);
    const RunRecord run = *ExperimentStore::open_readonly(db).get_run(w.live_run_id());
    QCOMPARE(run.preset, std::string("llama-tiny"));
    QCOMPARE(run.model_config["name"].get<std::string>(), load_preset("llama-tiny").model.name);
    // Undo brings back the window's preset with its model.
    w.arch_panel()->undo_stack()->undo();
    QCOMPARE(w.arch_panel()->preset_name(), std::string("gpt-tiny"));
  }
};

QTEST_MAIN(LauncherTest)
#include "gui_launcher_test.moc"
