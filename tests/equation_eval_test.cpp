// pass@k on a task with a checker: exactly the right answers pass, sampled
// pass@k behaves as the estimator should, and the options are checked.
#include "eval/equation_eval.h"

#include <gtest/gtest.h>

#include "core/presets.h"
#include "data/synthetic.h"
#include "data/text_dataset.h"
#include "expect_error.h"
#include "generate/sampler.h"

namespace bl {
namespace {

TEST(EquationEval, ParsesPromptAnswerLines) {
  const auto eqs = parse_equations("1+2=3\nnot an equation\n=5\n4=\n1=2=3\n07*08=56\n");
  ASSERT_EQ(eqs.size(), 2u);
  EXPECT_EQ(eqs[0].first, "1+2=");
  EXPECT_EQ(eqs[0].second, "3");
  EXPECT_EQ(eqs[1].first, "07*08=");
  EXPECT_EQ(eqs[1].second, "56");
}

// The checker against the model's own greedy answers: with them as the
// answer key every problem passes (so batched decoding gives each row what
// decoding it alone gives); with every other answer changed, exactly half do.
TEST(EquationEval, PassesExactlyTheProblemsWhoseAnswerTheModelGives) {
  ModularTask task;
  task.p = 7;
  const SyntheticText s = modular_arithmetic(task);
  auto tok = make_tokenizer("char", s.text);
  ModelConfig mc = load_preset("gpt-tiny").model;
  mc.n_layers = 1;
  mc.block.d_model = 32;
  mc.block.d_ff = 64;
  mc.vocab_size = tok->vocab_size();
  LanguageModel m(mc);
  Rng rng(1);
  m.init_weights(rng);
  auto eqs = parse_equations(s.text);
  ASSERT_EQ(eqs.size(), 49u);
  SamplingOptions greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 1;
  for (auto& [prompt, answer] : eqs) {
    Rng r(0);
    answer = tok->decode(generate(m, tok->encode(prompt), greedy, r));
  }
  const EquationEvalResult all = evaluate_equations(m, *tok, eqs, {});
  EXPECT_EQ(all.problems, 49);
  EXPECT_EQ(all.sample_accuracy, 1.0);
  EXPECT_EQ(all.pass_at_k[0], (std::pair<int64_t, double>{1, 1.0}));
  for (size_t i = 0; i < eqs.size(); i += 2)
    eqs[i].second = eqs[i].second == "0" ? "1" : "0";  // 25 now wrong
  const EquationEvalResult half = evaluate_equations(m, *tok, eqs, {});
  EXPECT_DOUBLE_EQ(half.pass_at_k[0].second, 24.0 / 49.0);

  // Sampling: pass@1 is the per-sample accuracy, pass@k grows with k, seeded.
  EquationEvalOptions sampled;
  sampled.samples = 8;
  sampled.ks = {1, 4, 8};
  sampled.temperature = 1.0f;
  const EquationEvalResult r = evaluate_equations(m, *tok, eqs, sampled);
  ASSERT_EQ(r.pass_at_k.size(), 3u);
  EXPECT_NEAR(r.pass_at_k[0].second, r.sample_accuracy, 1e-12);
  EXPECT_GT(r.pass_at_k[0].second, 0.0);
  EXPECT_LE(r.pass_at_k[0].second, r.pass_at_k[1].second);
  EXPECT_LE(r.pass_at_k[1].second, r.pass_at_k[2].second);
  EXPECT_LT(r.pass_at_k[2].second, 1.0);
  EXPECT_EQ(evaluate_equations(m, *tok, eqs, sampled).pass_at_k, r.pass_at_k);
  sampled.limit = 5;
  EXPECT_EQ(evaluate_equations(m, *tok, eqs, sampled).problems, 5);
}

TEST(EquationEval, RefusesBadOptions) {
  auto tok = make_tokenizer("char", "0123456789+=\n");
  ModelConfig mc = load_preset("gpt-tiny").model;
  mc.n_layers = 1;
  mc.block.d_model = 32;
  mc.block.d_ff = 64;
  mc.vocab_size = tok->vocab_size();
  LanguageModel m(mc);
  const auto eqs = parse_equations("1+2=3\n");
  auto err = [&](EquationEvalOptions o, std::vector<std::pair<std::string, std::string>> e) {
    return test::error_of<std::invalid_argument>([&] { evaluate_equations(m, *tok, e, o); });
  };
  EquationEvalOptions o;
  o.samples = 4;
  EXPECT_PRED2(test::contains, err(o, eqs), "greedy decoding (temperature 0) gives one answer");
  o.temperature = 1;
  o.ks = {5};
  EXPECT_PRED2(test::contains, err(o, eqs), "k must be in [1, samples = 4], got 5");
  EXPECT_PRED2(test::contains, err({}, {}), "no PROMPT=ANSWER lines");
  const std::string huge(size_t(mc.block.max_seq_len), '1');
  EXPECT_PRED2(test::contains, err({}, {{huge + "=", "2"}}), "longer than the model's context");
}

}  // namespace
}  // namespace bl
