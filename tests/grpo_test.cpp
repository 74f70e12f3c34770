// GRPO as a training objective and a run kind: rewards and prompts are read
// and checked; on a toy task over the bundled corpus GRPO raises the mean
// reward of the policy's own samples; a stopped run resumes to the same
// curve; the launcher records the recipe and refuses what it cannot train.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data/prompt_data.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "expect_error.h"
#include "run/launcher.h"
#include "run_support.h"
#include "temp_files.h"
#include "test_paths.h"
#include "train/rewards.h"

using namespace bl;

namespace {

using test::launch_error;
using test::shakespeare;

/// n prompts: the first 12 characters of corpus lines of 20 or more.
std::string corpus_prompts(int n) {
  std::istringstream in(shakespeare());
  std::string line, out;
  for (int made = 0; made < n && std::getline(in, line);)
    if (line.size() >= 20) {
      out += nlohmann::json{{"prompt", line.substr(0, 12)}, {"target", line.substr(12, 4)}}.dump() +
             "\n";
      ++made;
    }
  return out;
}

RunSpec base_spec(const test::TempDir& dir, int64_t steps) {
  RunSpec s;
  s.preset_name = "gpt-tiny";
  s.set = {"model.n_layers=2",           "model.block.d_model=64",   "model.block.d_ff=256",
           "model.block.n_heads=4",      "model.block.n_kv_heads=4", "train.seq_len=64",
           "model.block.max_seq_len=64", "train.eval_interval=0",    "train.eval_batches=1"};
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

RunSpec grpo_spec(const test::TempDir& dir, int64_t base_run, int64_t steps) {
  RunSpec s;
  s.kind = RunKind::kGrpo;
  s.grpo.base_run_id = base_run;
  s.grpo.reward = "regex:^[aeiou]";
  s.grpo.grpo.group = 8;
  s.grpo.grpo.max_new_tokens = 4;
  s.data_path = dir / "prompts.jsonl";
  if (!std::filesystem::exists(s.data_path)) test::write_bytes(s.data_path, corpus_prompts(200));
  s.db_path = dir / "experiments.db";
  s.train.max_steps = steps;
  s.train.warmup_steps = 2;
  s.train.batch_size = 4;
  s.train.seq_len = 24;
  s.train.threads = 1;
  return s;
}

int64_t trained_base(const test::TempDir& dir, int64_t steps) {
  auto b = launch_run(base_spec(dir, steps));
  b->train();
  return b->run_id();
}

struct Curve : Callback {
  std::vector<double> loss, reward, val_reward;
  void on_step_end(Trainer&, const StepMetrics& m) override {
    loss.push_back(m.loss);
    for (auto& [k, v] : m.extra) {
      if (k == "grpo/reward_mean") reward.push_back(v);
      if (k == "grpo/val_reward") val_reward.push_back(v);
    }
  }
};

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / double(to - from);
}

}  // namespace

TEST(Rewards, EachKindScoresAsDocumented) {
  const Reward exact = Reward::parse("exact");
  EXPECT_TRUE(exact.needs_target());
  EXPECT_EQ(exact("p", "42\nmore", "42"), 1.0);
  EXPECT_EQ(exact("p", "421", "42"), 0.0);
  const Reward re = Reward::parse("regex:^[aeiou]");
  EXPECT_FALSE(re.needs_target());
  EXPECT_EQ(re("p", "apple", ""), 1.0);
  EXPECT_EQ(re("p", "pear", ""), 0.0);
  const Reward len = Reward::parse("length:4");
  EXPECT_EQ(len("p", "abcd\nxyz", ""), 1.0);
  EXPECT_EQ(len("p", "ab", ""), 0.5);
  EXPECT_EQ(len("p", "abcdefghijk", ""), 0.0);
  // An external command reads the completion on stdin, the prompt and target
  // from the environment, and prints the reward.
  const Reward cmd = Reward::parse(
      "cmd:n=$(wc -c); if [ \"$BLOCKLAB_TARGET\" = t ]; then echo $((n * 2)); else echo $n; fi");
  EXPECT_EQ(cmd("p", "abc", "t"), 6.0);
  EXPECT_EQ(cmd("p", "abc", "u"), 3.0);
  EXPECT_PRED2(test::contains, test::error_of<std::runtime_error>([] {
                 Reward::parse("cmd:exit 3")("p", "c", "");
               }),
               "reward command 'exit 3' failed (exit status 3)");
  EXPECT_PRED2(test::contains, test::error_of<std::runtime_error>([] {
                 Reward::parse("cmd:echo hello")("p", "c", "");
               }),
               "printed no number (\"hello\")");
  for (const char* bad :
       {"", "exact:x", "regex:", "regex:(", "length:0", "length:x", "cmd:", "bleu"})
    EXPECT_THROW(Reward::parse(bad), std::invalid_argument) << bad;
  EXPECT_PRED2(test::contains, test::error_of<std::invalid_argument>([] { Reward::parse("bleu"); }),
               "unknown reward 'bleu' (exact, regex:PATTERN, length:N or cmd:COMMAND)");
}

TEST(PromptSet, ReadsSplitsAndNamesMistakes) {
  auto tok = make_tokenizer("char", "abcdefghij {}\":,\n");
  const PromptSet p(
      "{\"prompt\": \"ab\", \"target\": \"c\"}\n\n{\"prompt\": \"de\"}\n{\"prompt\": \"f\"}\n",
      "p.jsonl", *tok, 0.2);
  ASSERT_EQ(p.train().size(), 2u);
  ASSERT_EQ(p.val().size(), 1u);
  EXPECT_EQ(p.train()[0].target, "c");
  EXPECT_EQ(p.train()[0].ids, tok->encode("ab"));
  EXPECT_FALSE(p.all_have_targets());
  auto err = [&](const std::string& jsonl) {
    return test::error_of<std::invalid_argument>([&] { PromptSet(jsonl, "p.jsonl", *tok, 0.1); });
  };
  const std::string ok = "{\"prompt\": \"a\"}\n";
  EXPECT_PRED2(test::contains, err(ok + "[1]\n"), "p.jsonl:2: not a JSON object");
  EXPECT_PRED2(test::contains, err(ok + "{\"target\": \"a\"}\n"),
               "p.jsonl:2: \"prompt\" is missing");
  EXPECT_PRED2(test::contains, err(ok + "{\"prompt\": \"a\", \"target\": 1}\n"),
               "p.jsonl:2: \"target\" must be a string, got number");
  EXPECT_PRED2(test::contains, err(ok + "{\"prompt\": \"XY\"}\n"),
               "p.jsonl:2: cannot be encoded with the char tokenizer");
  EXPECT_PRED2(test::contains, err(ok), "1 prompt(s); GRPO needs at least 2");
}

// The objective GRPO optimises, on a toy task: completions of 4 characters
// to line starts of the corpus, rewarded 1 when they begin with a lowercase
// vowel. Sampled at temperature 1 from a briefly trained model, few groups
// are all-equal; 40 steps raise the mean reward of the policy's own samples
// and of its greedy answers to held-out prompts.
TEST(Grpo, RaisesTheMeanRewardOfItsOwnSamples) {
  test::TempDir dir;
  const int64_t base = trained_base(dir, 60);
  RunSpec s = grpo_spec(dir, base, 40);
  s.train.learning_rate = 2e-3;
  s.train.eval_interval = 20;
  auto run = launch_run(s);
  ASSERT_NE(run->grpo(), nullptr);
  EXPECT_EQ(run->trainer().tokens_per_step(), 4 * 8 * 24);
  const double val0 = -run->trainer().evaluate();
  Curve c;
  run->add_callback(c);
  const TrainSummary sum = run->train();
  ASSERT_EQ(sum.status, RunStatus::kCompleted);
  ASSERT_EQ(c.reward.size(), 40u);
  ASSERT_EQ(c.val_reward.size(), 2u);
  const double first = mean(c.reward, 0, 10), last = mean(c.reward, 30, 40);
  std::printf(
      "GRPO mean sampled reward %.3f (steps 1-10) -> %.3f (steps 31-40); greedy val "
      "reward %.3f -> %.3f\n",
      first, last, val0, c.val_reward.back());
  EXPECT_GT(last, first + 0.15);
  EXPECT_GT(c.val_reward.back(), val0);
  ExperimentStore store(s.db_path);
  const RunRecord r = *store.get_run(run->run_id());
  EXPECT_EQ(r.parent_run_id, base);
  ASSERT_TRUE(is_grpo_run(r));
  EXPECT_EQ(r.summary["grpo"]["reward"], "regex:^[aeiou]");
  EXPECT_EQ(r.summary["grpo"]["group"], 8);
  EXPECT_NE(std::find(r.tags.begin(), r.tags.end(), "grpo"), r.tags.end());
}

// Stopped after step 3 and resumed, a GRPO run draws the same prompts and
// samples: steps 4-6 equal an uninterrupted run's.
TEST(Grpo, AStoppedRunResumesToTheSameCurve) {
  test::TempDir dir;
  const int64_t base = trained_base(dir, 10);
  RunSpec s = grpo_spec(dir, base, 6);
  s.checkpoint_interval = 3;
  Curve whole;
  {
    auto r = launch_run(s);
    r->add_callback(whole);
    r->train();
  }
  struct StopAt3 : Callback {
    void on_step_end(Trainer& t, const StepMetrics& m) override {
      if (m.step == 2) t.request_stop("test");
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
  ASSERT_NE(r->grpo(), nullptr) << "a resumed GRPO run lost its objective";
  EXPECT_EQ(r->trainer().step(), 3);
  r->add_callback(rest);
  r->train();
  ASSERT_EQ(whole.loss.size(), 6u);
  ASSERT_EQ(rest.loss.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rest.loss[i], whole.loss[3 + i]) << "step " << 4 + i;
    EXPECT_EQ(rest.reward[i], whole.reward[3 + i]) << "step " << 4 + i;
  }
}

TEST(Grpo, LauncherRefusesWhatItCannotTrain) {
  test::TempDir dir;
  const int64_t base = trained_base(dir, 6);
  const size_t runs = ExperimentStore(dir / "experiments.db").list_runs().size();
  RunSpec bad = grpo_spec(dir, base, 4);
  bad.grpo.reward = "bleu";
  EXPECT_PRED2(test::contains, launch_error(bad), "--reward: unknown reward 'bleu'");
  bad = grpo_spec(dir, base, 4);
  bad.grpo.grpo.group = 1;
  EXPECT_PRED2(test::contains, launch_error(bad), "--group-size must be >= 2");
  bad = grpo_spec(dir, base, 4);
  bad.grpo.grpo.max_new_tokens = 64;
  EXPECT_PRED2(test::contains, launch_error(bad), "--max-new-tokens must be in [1, 64)");
  bad = grpo_spec(dir, base, 4);
  bad.data_path.clear();
  EXPECT_PRED2(test::contains, launch_error(bad), "a GRPO run needs prompts");
  bad = grpo_spec(dir, base, 4);
  bad.data_path = dir / "untargeted.jsonl";
  test::write_bytes(bad.data_path, "{\"prompt\": \"First\"}\n{\"prompt\": \"Second\"}\n");
  bad.grpo.reward = "exact";
  EXPECT_PRED2(test::contains, launch_error(bad), "but some prompts have none");
  EXPECT_EQ(ExperimentStore(dir / "experiments.db").list_runs().size(), runs);
}
