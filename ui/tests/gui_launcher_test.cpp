// One run launcher for the CLI and the workbench: the same RunSpec trained by
// the blocklab-cli process and by the workbench's TrainingSession gives the
// same run record and the same losses; a run of one resumes in the other; the
// record names the preset the composer's model came from.
#include <QPushButton>
#include <QTemporaryDir>
#include <QTest>
#include <QUndoStack>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "arch/arch_panel.h"
#include "main_window.h"
#include "run/launcher.h"
#include "store/experiment_store.h"
#include "training/training_panel.h"
#include "training/training_session.h"

using namespace bl;

namespace {

struct Cli {
  int exit_code = -1;
  std::string out;
};

Cli run_cli(const std::string& args) {
  Cli r;
  FILE* p = popen((std::string(BLOCKLAB_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// The CLI arguments that describe `s` (the fields this test uses).
std::string cli_args(const RunSpec& s) {
  std::ostringstream a;
  a << "train --quiet --db '" << s.db_path << "'";
  if (s.kind == RunKind::kResume) a << " --resume " << *s.parent_run_id;
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

/// Trains `s` on a TrainingSession (the workbench's worker) and returns the run id.
int64_t train_in_session(const RunSpec& s) {
  TrainingSession session(s.db_path);
  session.start(s);
  int64_t id = 0;
  for (int i = 0; i < 6000; ++i) {
    const TrainingSession::Update u = session.drain();
    if (u.run_id) id = *u.run_id;
    if (!u.error.empty()) qWarning("session failed: %s", u.error.c_str());
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
    const Cli cli = run_cli(cli_args(s));
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
    const Cli cli = run_cli(cli_args(r));
    QVERIFY2(cli.exit_code == 0, cli.out.c_str());
    const int64_t cli_resume = newest_run(s.db_path);

    const Cli cli_run = run_cli(cli_args(s));
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
