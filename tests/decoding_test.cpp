// Decoding beyond plain sampling: decoding-state clone / row selection for
// every mixer, beam search, best-of-N, greedy speculative decoding, the
// repetition penalty and stop strings, each against a plain reference (full
// forward passes without a decoding state).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "component_checks.h"
#include "core/presets.h"
#include "generate/beam_search.h"
#include "generate/best_of.h"
#include "generate/log_prob.h"
#include "generate/sampler.h"
#include "generate/speculative.h"
#include "generate/stop_strings.h"
#include "tensor/graph.h"

namespace bl {
namespace {

// Every kind of decoding state: KV cache (gpt, llama), local KV ring
// (mistral), MLA latents (deepseek-v2), SSM states (mamba2/3), delta-rule
// state + conv tails (qwen-next), chunked/global hybrids (llama4), Mamba +
// attention + MoE (jamba).
const char* const kPresets[] = {"gpt-tiny",         "llama-tiny",  "mistral-tiny",
                                "deepseek-v2-tiny", "mamba2-tiny", "mamba3-tiny",
                                "qwen-next-tiny",   "llama4-tiny", "jamba-tiny"};

std::unique_ptr<LanguageModel> random_model(const std::string& preset, int64_t vocab,
                                            uint64_t seed) {
  Preset p = load_preset(preset);
  p.model.vocab_size = vocab;
  p.model.block.max_seq_len = 24;
  auto m = std::make_unique<LanguageModel>(p.model);
  Rng rng(seed);
  m->init_weights(rng);
  test::randomize(*m, rng, 0.15f);
  return m;
}

std::vector<float> last_logits(LanguageModel& m, const std::vector<int32_t>& ids, int64_t rows,
                               DecodeState* st) {
  NoGradGuard ng;
  const int64_t len = int64_t(ids.size()) / rows, V = m.config().vocab_size;
  Tensor out = m.forward(Tokens{ids.data(), Shape{rows, len}}, st);
  std::vector<float> r;
  for (int64_t b = 0; b < rows; ++b) {
    const float* p = out.data() + ((b + 1) * len - 1) * V;
    r.insert(r.end(), p, p + V);
  }
  current_graph().clear();
  return r;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    d = std::max(d, double(std::abs(a[i] - b[i])));
  return d;
}

TEST(DecodeState, CloneAndSelectRowsForEveryMixer) {
  for (const char* preset : kPresets) {
    SCOPED_TRACE(preset);
    auto m = random_model(preset, 12, 7);
    const std::vector<int32_t> s0{1, 5, 2, 9, 3}, s1{4, 4, 0, 11, 7};
    std::vector<int32_t> both = s0;
    both.insert(both.end(), s1.begin(), s1.end());
    DecodeState st = m->make_decode_state(2, 24);
    last_logits(*m, both, 2, &st);
    // A clone continues exactly as the original, and the original is untouched by it.
    DecodeState copy;
    for (auto& l : st) copy.push_back(l->clone());
    const std::vector<int32_t> next{6, 8};
    const auto a = last_logits(*m, next, 2, &copy);
    const auto b = last_logits(*m, next, 2, &st);
    EXPECT_EQ(max_diff(a, b), 0.0);
    // Rows 1, 0, 1 then one more token each: as three sequences fed from the start.
    for (auto& l : st) l->select_rows({1, 0, 1});
    const std::vector<int32_t> more{2, 3, 10};
    const auto got = last_logits(*m, more, 3, &st);
    std::vector<int32_t> full;
    for (auto [seq, n1, n2] : {std::tuple{s1, 8, 2}, std::tuple{s0, 6, 3}, std::tuple{s1, 8, 10}}) {
      full.insert(full.end(), seq.begin(), seq.end());
      full.push_back(n1);
      full.push_back(n2);
    }
    const auto want = last_logits(*m, full, 3, nullptr);
    EXPECT_LT(max_diff(got, want), 1e-4);
    for (auto& l : st) EXPECT_EQ(l->batch, 3);
    EXPECT_THROW(st[0]->select_rows({3}), std::out_of_range);
  }
}

// Beam search recomputed from scratch: every hypothesis re-encoded in full each step.
std::vector<Hypothesis> reference_beam_search(LanguageModel& m, const std::vector<int32_t>& prompt,
                                              int64_t beams, int64_t steps) {
  const int64_t V = m.config().vocab_size;
  std::vector<Hypothesis> live(1);
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<double> scores, next;
    for (const auto& h : live) {
      std::vector<int32_t> ids = prompt;
      ids.insert(ids.end(), h.tokens.begin(), h.tokens.end());
      const auto logits = last_logits(m, ids, 1, nullptr);
      const auto lp = log_softmax(logits.data(), V);
      scores.push_back(h.log_prob);
      next.insert(next.end(), lp.begin(), lp.end());
    }
    std::vector<Hypothesis> kept;
    for (const auto& c : best_candidates(scores, next, V, beams)) {
      Hypothesis h = live[size_t(c.beam)];
      h.tokens.push_back(c.token);
      h.log_prob = h.score = c.log_prob;
      kept.push_back(h);
    }
    live = kept;
  }
  return live;
}

TEST(BeamSearch, MatchesPlainReferenceForEveryMixer) {
  for (const char* preset : kPresets) {
    SCOPED_TRACE(preset);
    auto m = random_model(preset, 12, 11);
    const std::vector<int32_t> prompt{3, 1, 4, 1, 5};
    BeamOptions opt;
    opt.beams = 3;
    opt.max_new_tokens = 6;
    const auto got = beam_search(*m, prompt, opt);
    const auto want = reference_beam_search(*m, prompt, 3, 6);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << "hypothesis " << i;
      EXPECT_NEAR(got[i].log_prob, want[i].log_prob, 1e-4);
      EXPECT_NEAR(got[i].log_prob, sequence_log_prob(*m, prompt, got[i].tokens), 1e-4);
    }
    for (size_t i = 1; i < got.size(); ++i) EXPECT_GE(got[i - 1].score, got[i].score);
  }
}

TEST(BeamSearch, WideEnoughBeamFindsTheExactBestPair) {
  auto m = random_model("llama-tiny", 6, 5);
  const std::vector<int32_t> prompt{2, 0, 5};
  double best = -1e300;
  std::vector<int32_t> arg;
  for (int32_t a = 0; a < 6; ++a)
    for (int32_t b = 0; b < 6; ++b) {
      const double lp = sequence_log_prob(*m, prompt, {a, b});
      if (lp > best) best = lp, arg = {a, b};
    }
  BeamOptions opt;
  opt.beams = 6;  // keeps every first token, then picks among all 36 pairs
  opt.max_new_tokens = 2;
  const auto got = beam_search(*m, prompt, opt);
  EXPECT_EQ(got[0].tokens, arg);
  EXPECT_NEAR(got[0].log_prob, best, 1e-4);
}

TEST(BeamSearch, OneBeamIsGreedyAndEosEndsAHypothesis) {
  auto m = random_model("gpt-tiny", 12, 2);
  const std::vector<int32_t> prompt{7, 7, 1};
  SamplingOptions greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 8;
  Rng rng(1);
  const auto g = generate(*m, prompt, greedy, rng);
  BeamOptions opt;
  opt.beams = 1;
  opt.max_new_tokens = 8;
  EXPECT_EQ(beam_search(*m, prompt, opt)[0].tokens, g);
  // With the greedy path's third token as end-of-text, the best finished hypothesis stops there.
  opt.eos_id = g[2];
  opt.beams = 2;
  for (const auto& h : beam_search(*m, prompt, opt)) {
    const auto it = std::find(h.tokens.begin(), h.tokens.end(), opt.eos_id);
    EXPECT_TRUE(it == h.tokens.end() || it + 1 == h.tokens.end()) << "tokens after EOS";
  }
  opt.beams = 0;
  EXPECT_THROW(beam_search(*m, prompt, opt), std::invalid_argument);
}

TEST(BestOfN, ScoresAreTheSequencesLogProbabilitiesBestFirst) {
  for (const char* preset : {"gpt-tiny", "mamba2-tiny", "qwen-next-tiny"}) {
    SCOPED_TRACE(preset);
    auto m = random_model(preset, 12, 3);
    const std::vector<int32_t> prompt{1, 2, 3};
    SamplingOptions opt;
    opt.temperature = 1.5f;
    opt.max_new_tokens = 7;
    Rng rng(9);
    const auto seqs = best_of_n(*m, prompt, opt, 5, rng);
    ASSERT_EQ(seqs.size(), 5u);
    for (size_t i = 0; i < seqs.size(); ++i) {
      EXPECT_EQ(seqs[i].tokens.size(), 7u);
      EXPECT_NEAR(seqs[i].log_prob, sequence_log_prob(*m, prompt, seqs[i].tokens), 1e-4);
      if (i) {
        EXPECT_GE(seqs[i - 1].log_prob, seqs[i].log_prob);
      }
    }
    // Five draws at temperature 1.5 over 12 tokens are not all the same sequence.
    EXPECT_NE(seqs.front().tokens, seqs.back().tokens);
  }
}

TEST(Speculative, OutputIsTheTargetsGreedyOutput) {
  struct Case {
    const char *target, *draft;
  };
  for (Case c : {Case{"llama-tiny", "gpt-tiny"}, Case{"mamba2-tiny", "llama-tiny"},
                 Case{"qwen-next-tiny", "mamba3-tiny"}, Case{"deepseek-v2-tiny", "mistral-tiny"},
                 Case{"jamba-tiny", "llama4-tiny"}}) {
    SCOPED_TRACE(std::string(c.target) + " drafted by " + c.draft);
    auto target = random_model(c.target, 12, 21);
    auto draft = random_model(c.draft, 12, 22);
    const std::vector<int32_t> prompt{4, 8, 1};
    SamplingOptions greedy;
    greedy.temperature = 0;
    greedy.max_new_tokens = 18;
    Rng rng(0);
    const auto want = generate(*target, prompt, greedy, rng);
    for (int64_t k : {1, 3, 5}) {
      const auto got = speculative_generate(*target, *draft, prompt, 18, k);
      EXPECT_EQ(got.tokens, want) << "draft_tokens " << k;
      EXPECT_LE(got.accepted, got.drafted);
      EXPECT_GT(got.rounds, 0);
    }
  }
}

TEST(Speculative, ADraftEqualToTheTargetIsAlwaysAccepted) {
  auto target = random_model("llama-tiny", 12, 4);
  auto same = random_model("llama-tiny", 12, 4);
  const auto r = speculative_generate(*target, *same, {1, 2}, 16, 4);
  EXPECT_EQ(r.tokens.size(), 16u);
  EXPECT_GT(r.drafted, 0);
  EXPECT_EQ(r.accepted, r.drafted);
  EXPECT_DOUBLE_EQ(r.acceptance_rate(), 1.0);
  // Up to the context limit (max_seq_len 24): 24 - 2 + 1 tokens at most.
  EXPECT_EQ(speculative_generate(*target, *same, {1, 2}, 100, 4).tokens.size(), 23u);
  auto other_vocab = random_model("llama-tiny", 13, 4);
  EXPECT_THROW(speculative_generate(*target, *other_vocab, {1}, 4, 2), std::invalid_argument);
}

TEST(RepetitionPenalty, DividesPositiveAndMultipliesNegativeLogitsOfSeenTokens) {
  std::vector<float> l{2.0f, -1.0f, 0.5f, 3.0f};
  apply_repetition_penalty(l.data(), 4, {0, 1, 1}, 2.0f);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
  EXPECT_THROW(apply_repetition_penalty(l.data(), 4, {0}, 0.0f), std::invalid_argument);
  EXPECT_THROW(apply_repetition_penalty(l.data(), 4, {0}, NAN), std::invalid_argument);
}

TEST(RepetitionPenalty, GreedyDecodingMatchesAPlainReference) {
  auto m = random_model("llama-tiny", 12, 8);
  std::vector<int32_t> ctx{3, 3, 5};
  SamplingOptions opt;
  opt.temperature = 0;
  opt.max_new_tokens = 10;
  opt.repetition_penalty = 1.8f;
  Rng rng(0);
  const auto got = generate(*m, ctx, opt, rng);
  for (int32_t id : got) {
    auto logits = last_logits(*m, ctx, 1, nullptr);
    apply_repetition_penalty(logits.data(), 12, ctx, 1.8f);
    const int32_t want = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(id, want);
    ctx.push_back(want);
  }
  opt.repetition_penalty = 1.0f;
  Rng rng2(0);
  EXPECT_NE(generate(*m, {3, 3, 5}, opt, rng2), got) << "the penalty changed nothing";
}

TEST(StopStrings, StopAtTheEarliestMatchAcrossPiecesAndHoldBackPrefixes) {
  StopStrings s({"\n\n", "END"});
  EXPECT_EQ(s.push("Hello E"), "Hello ");  // "E" may start "END"
  EXPECT_EQ(s.push("N"), "");
  EXPECT_EQ(s.push("x"), "ENx");  // not END after all
  EXPECT_EQ(s.push("a\n"), "a");
  EXPECT_EQ(s.push("\nrest"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.push("more"), "");
  StopStrings t({"ab", "b"});
  EXPECT_EQ(t.push("xab"), "x");  // both match; "ab" starts first
  StopStrings u({"zz"});
  EXPECT_EQ(u.push("az"), "a");
  EXPECT_EQ(u.flush(), "z");
  EXPECT_FALSE(u.stopped());
  EXPECT_TRUE(StopStrings({""}).empty());
}

}  // namespace
}  // namespace bl
