// DPO as a training objective and a run kind: on the bundled corpus it raises
// the held-out preference of the real continuation over its reversal; a
// stopped DPO run resumes to the same curve; the launcher records the
// reference and refuses what it cannot train.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data/text_dataset.h"
#include "expect_error.h"
#include "run/launcher.h"
#include "run_support.h"
#include "temp_files.h"
#include "test_paths.h"

using namespace bl;

namespace {

using test::launch_error;
using test::shakespeare;

/// The first n pairs of the bundled toy preference set
/// (scripts/make_preference_pairs.py): prompt = a line of the corpus, chosen =
/// the next line's first 24 characters, rejected = the same reversed.
std::string corpus_pairs(int n) {
  std::istringstream in(
      read_text_file(std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/shakespeare_pairs.jsonl"));
  std::string line, out;
  for (int i = 0; i < n && std::getline(in, line); ++i) out += line + "\n";
  return out;
}

RunSpec base_spec(const test::TempDir& dir, int64_t steps) {
  RunSpec s;
  s.preset_name = "gpt-tiny";
  s.set = {"model.n_layers=2",      "model.block.d_model=64",   "model.block.d_ff=256",
           "model.block.n_heads=4", "model.block.n_kv_heads=4", "train.eval_interval=0",
           "train.eval_batches=1"};
  s.train.max_steps = steps;
  s.train.warmup_steps = 5;
  s.train.batch_size = 8;
  s.train.seq_len = 64;
  s.train.threads = 1;
  s.train.learning_rate = 3e-3;
  s.data_path = dir / "data.txt";
  if (!std::filesystem::exists(s.data_path)) test::write_bytes(s.data_path, shakespeare());
  s.db_path = dir / "experiments.db";
  return s;
}

RunSpec dpo_spec(const test::TempDir& dir, int64_t base_run, int64_t steps) {
  RunSpec s;
  s.kind = RunKind::kPreference;
  s.preference.base_run_id = base_run;
  s.preference.beta = 0.1;
  s.data_path = dir / "pairs.jsonl";
  if (!std::filesystem::exists(s.data_path)) test::write_bytes(s.data_path, corpus_pairs(240));
  s.db_path = dir / "experiments.db";
  s.train.max_steps = steps;
  s.train.warmup_steps = 2;
  s.train.threads = 1;
  return s;
}

int64_t trained_base(const test::TempDir& dir, int64_t steps) {
  auto b = launch_run(base_spec(dir, steps));
  b->train();
  return b->run_id();
}

struct Curve : Callback {
  std::vector<double> loss, val_loss, val_acc, val_margin;
  void on_step_end(Trainer&, const StepMetrics& m) override {
    loss.push_back(m.loss);
    if (!m.eval_loss) return;
    val_loss.push_back(*m.eval_loss);
    for (auto& [k, v] : m.extra) {
      if (k == "dpo/val_reward_accuracy") val_acc.push_back(v);
      if (k == "dpo/val_reward_margin") val_margin.push_back(v);
    }
  }
};

}  // namespace

// The objective DPO optimises, measured on pairs it never trained on: the
// policy starts equal to its reference (loss log 2, margin 0) and after 40
// steps prefers the real continuations over their reversals by a wider
// margin than the reference does, on most held-out pairs.
TEST(Dpo, RaisesTheHeldOutMarginOfChosenOverRejected) {
  test::TempDir dir;
  const int64_t base = trained_base(dir, 60);
  RunSpec s = dpo_spec(dir, base, 40);
  s.train.eval_interval = 10;
  auto run = launch_run(s);
  ASSERT_NE(run->preference(), nullptr);
  EXPECT_EQ(run->preference()->train().size() + run->preference()->val().size(), 240u);
  const double lr0 = run->preset().train.learning_rate;
  EXPECT_DOUBLE_EQ(lr0, 3e-4);  // a tenth of the base's, as the note says
  EXPECT_NEAR(run->trainer().evaluate(), std::log(2.0), 1e-6);  // policy == reference
  Curve c;
  run->add_callback(c);
  const TrainSummary sum = run->train();
  ASSERT_EQ(sum.status, RunStatus::kCompleted);
  ASSERT_EQ(c.val_loss.size(), 4u);
  ASSERT_EQ(c.val_acc.size(), 4u);
  std::printf("DPO held-out loss %.4f -> %.4f, reward accuracy %.3f -> %.3f, margin %.3f -> %.3f\n",
              c.val_loss.front(), c.val_loss.back(), c.val_acc.front(), c.val_acc.back(),
              c.val_margin.front(), c.val_margin.back());
  EXPECT_LT(c.val_loss.back(), std::log(2.0) - 0.1);
  EXPECT_GT(c.val_acc.back(), 0.8);
  EXPECT_GT(c.val_margin.back(), c.val_margin.front());
  EXPECT_GT(c.val_margin.front(), 0.0);
  // Recorded as a DPO run of the base, with its reference.
  ExperimentStore store(s.db_path);
  const RunRecord r = *store.get_run(run->run_id());
  EXPECT_EQ(r.parent_run_id, base);
  ASSERT_TRUE(is_preference_run(r));
  EXPECT_EQ(r.summary["dpo"]["base_run"], base);
  EXPECT_EQ(r.summary["dpo"]["beta"], 0.1);
  EXPECT_NE(std::find(r.tags.begin(), r.tags.end(), "dpo"), r.tags.end());
}

// Stopped after step 4 and resumed, a DPO run draws the same pairs and
// recomputes the same reference: steps 5-8 equal an uninterrupted run's.
TEST(Dpo, AStoppedRunResumesToTheSameCurve) {
  test::TempDir dir;
  const int64_t base = trained_base(dir, 20);
  RunSpec s = dpo_spec(dir, base, 8);
  s.checkpoint_interval = 4;
  Curve whole;
  {
    auto r = launch_run(s);
    r->add_callback(whole);
    r->train();
  }
  struct StopAt4 : Callback {
    void on_step_end(Trainer& t, const StepMetrics& m) override {
      if (m.step == 3) t.request_stop("test");
    }
  } stop;
  int64_t id = 0;
  {
    auto r = launch_run(s);
    r->add_callback(stop);
    EXPECT_EQ(r->train().status, RunStatus::kStopped);
    id = r->run_id();
  }
  RunSpec rs;
  rs.kind = RunKind::kResume;
  rs.parent_run_id = id;
  rs.db_path = s.db_path;
  Curve rest;
  auto r = launch_run(rs);
  ASSERT_NE(r->preference(), nullptr) << "a resumed DPO run lost its pairs";
  EXPECT_EQ(r->trainer().step(), 4);
  r->add_callback(rest);
  r->train();
  ASSERT_EQ(whole.loss.size(), 8u);
  ASSERT_EQ(rest.loss.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(rest.loss[i], whole.loss[4 + i]) << "step " << 5 + i;
}

TEST(Dpo, LauncherRefusesWhatItCannotTrain) {
  test::TempDir dir;
  const int64_t base = trained_base(dir, 6);
  const size_t runs = ExperimentStore(dir / "experiments.db").list_runs().size();
  RunSpec bad = dpo_spec(dir, base, 4);
  bad.preference.beta = 0;
  EXPECT_PRED2(test::contains, launch_error(bad), "--dpo-beta must be > 0");
  bad = dpo_spec(dir, base, 4);
  bad.data_path.clear();
  EXPECT_PRED2(test::contains, launch_error(bad), "a DPO run needs preference pairs");
  bad = dpo_spec(dir, 999, 4);
  EXPECT_PRED2(test::contains, launch_error(bad), "no run with id 999");
  bad = dpo_spec(dir, base, 4);
  bad.preset_name = "gpt-tiny";
  EXPECT_PRED2(test::contains, launch_error(bad), "no preset, config, --set or tokenizer");
  bad = dpo_spec(dir, base, 4);
  bad.data_path = dir / "bad.jsonl";
  test::write_bytes(bad.data_path, corpus_pairs(3) + "{\"prompt\": \"a\"}\n");
  EXPECT_PRED2(test::contains, launch_error(bad), "bad.jsonl:4: missing \"chosen\"");
  bad.data_path = dir / "alien.jsonl";
  test::write_bytes(bad.data_path,
                    corpus_pairs(3) + R"({"prompt": "a", "chosen": "~~", "rejected": "b"})");
  EXPECT_PRED2(test::contains, launch_error(bad),
               "alien.jsonl:4: \"chosen\" cannot be encoded with the char tokenizer");
  EXPECT_EQ(ExperimentStore(dir / "experiments.db").list_runs().size(), runs);
}
