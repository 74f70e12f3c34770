// Evaluation pieces: the unbiased pass@k estimator against hand computation,
// whole-sequence LM evaluation (windows, bits per byte) against direct loss
// calls, and the FLOPs / MFU accounting on a known config.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/model.h"
#include "data/tokenizer.h"
#include "eval/flops.h"
#include "eval/lm_eval.h"
#include "eval/pass_at_k.h"
#include "expect_error.h"
#include "tensor/graph.h"
#include "tensor/rng.h"

namespace bl {
namespace {

using test::contains;
using test::error_of;

double choose(int64_t n, int64_t k) {
  return std::exp(std::lgamma(double(n + 1)) - std::lgamma(double(k + 1)) -
                  std::lgamma(double(n - k + 1)));
}

TEST(PassAtK, MatchesHandComputation) {
  EXPECT_DOUBLE_EQ(pass_at_k(10, 3, 1), 0.3);                  // c / n
  EXPECT_NEAR(pass_at_k(10, 3, 2), 1.0 - 21.0 / 45.0, 1e-15);  // 1 - C(7,2)/C(10,2)
  EXPECT_NEAR(pass_at_k(5, 1, 3), 1.0 - 4.0 / 10.0, 1e-15);    // 1 - C(4,3)/C(5,3)
  EXPECT_EQ(pass_at_k(5, 0, 3), 0.0);
  EXPECT_EQ(pass_at_k(5, 3, 3), 1.0);  // only 2 failures: any 3 hold a pass
  EXPECT_EQ(pass_at_k(1, 1, 1), 1.0);
  // Large n: the product form equals the binomial ratio.
  EXPECT_NEAR(pass_at_k(200, 10, 100), 1.0 - choose(190, 100) / choose(200, 100), 1e-9);
  EXPECT_NEAR(mean_pass_at_k({10, 10}, {3, 0}, 1), 0.15, 1e-15);
  EXPECT_TRUE(contains(error_of([] { pass_at_k(5, 6, 1); }), "c (passing samples)"));
  EXPECT_TRUE(contains(error_of([] { pass_at_k(5, 2, 6); }), "k must be in [1, n = 5]"));
  EXPECT_TRUE(contains(error_of([] { pass_at_k(0, 0, 1); }), "n (samples)"));
}

ModelConfig tiny_config() {
  ModelConfig m;
  m.name = "tiny";
  m.vocab_size = 256;
  m.n_layers = 2;
  m.block.d_model = 32;
  m.block.n_heads = 2;
  m.block.d_ff = 64;
  m.block.max_seq_len = 16;
  m.block.position = "learned";
  return m;
}

TEST(LmEval, ScoresEveryWindowOnceAndBitsPerByteFollow) {
  LanguageModel model(tiny_config());
  Rng rng(3);
  model.init_weights(rng);
  const ByteTokenizer tok;
  std::vector<int32_t> ids(100);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % 256);

  const LmEvalResult r = evaluate_lm(model, tok, ids, 2, 16);
  EXPECT_EQ(r.windows, 6);  // (100 - 1) / 16
  EXPECT_EQ(r.tokens, 96);
  EXPECT_EQ(r.bytes, 96);  // one byte per byte token
  EXPECT_DOUBLE_EQ(r.bytes_per_token, 1.0);
  // The same windows through model.loss one at a time.
  double nats = 0;
  {
    NoGradGuard ng;
    for (int64_t w = 0; w < 6; ++w) {
      const Shape s{1, 16};
      model.loss(Tokens{ids.data() + w * 16, s}, Tokens{ids.data() + w * 16 + 1, s}, false);
      nats += model.lm_loss() * 16;
      current_graph().clear();
    }
  }
  EXPECT_NEAR(r.loss, nats / 96, 1e-5);
  EXPECT_NEAR(r.bits_per_byte, r.loss / std::log(2.0), 1e-12);
  EXPECT_NEAR(r.perplexity, std::exp(r.loss), 1e-9);
  // Untrained: close to uniform over 256 tokens.
  EXPECT_NEAR(r.loss, std::log(256.0), 0.3);

  // --batches limits the windows; a short text is one shorter window.
  EXPECT_EQ(evaluate_lm(model, tok, ids, 2, 16, 1).windows, 2);
  const LmEvalResult s = evaluate_lm(model, tok, std::span(ids).first(10), 4, 16);
  EXPECT_EQ(s.windows, 1);
  EXPECT_EQ(s.seq_len, 9);
  EXPECT_EQ(s.tokens, 9);
  EXPECT_TRUE(contains(error_of([&] { evaluate_lm(model, tok, std::span(ids).first(1), 4, 16); }),
                       "at least 2"));

  // Multi-byte tokens: bits per byte divide by the bytes the targets spell.
  const CharTokenizer chars(std::vector<char32_t>{U'a', U'\u00e9', U'\u65e5'});  // 1, 2, 3 bytes
  ModelConfig mc = tiny_config();
  mc.vocab_size = 3;
  LanguageModel small(mc);
  small.init_weights(rng);
  const std::vector<int32_t> seq = {0, 1, 2, 1, 0, 2, 2};  // targets: é 日 é a 日 日 = 14 bytes
  const LmEvalResult m = evaluate_lm(small, chars, seq, 1, 16);
  EXPECT_EQ(m.bytes, 14);
  EXPECT_EQ(m.tokens, 6);
  EXPECT_NEAR(m.bits_per_byte, m.loss * 6 / std::log(2.0) / 14, 1e-12);
}

TEST(Flops, FormulaOnAKnownConfig) {
  // d 32, 2 layers, vocab 256, learned positions (16 x 32), tied embeddings.
  // Per layer: 2 layer norms 2 x 64, QKV + O 4 x (32 x 32 + 32), FFN
  // 32 x 64 + 64 + 64 x 32 + 32 = 4,224 + 4,192 + 128 = 8,544 parameters.
  // Training FLOPs per token at T = 16: 6 x (2 x 8,544 + final norm 64 + LM
  // head 256 x 32) + 12 x 2 layers x 16 x 32 = 6 x 25,344 + 12,288 = 164,352.
  LanguageModel model(tiny_config());
  EXPECT_EQ(model.num_parameters(), 2 * 8544 + 64 + 256 * 32 + 16 * 32);
  EXPECT_DOUBLE_EQ(model.flops_per_token(16), 164352.0);

  const FlopsReport r = flops_report(164352.0, 1000, 500.0, 1e9);
  EXPECT_DOUBLE_EQ(r.total_flops, 164352.0 * 1000);
  EXPECT_DOUBLE_EQ(r.achieved_flops_per_sec, 164352.0 * 500);
  EXPECT_DOUBLE_EQ(r.mfu, 164352.0 * 500 / 1e9);
  const nlohmann::json j = to_json(r);
  for (const char* k : {"flops_per_token", "total_flops", "mfu", "peak_flops_per_sec"})
    EXPECT_TRUE(j.contains(k)) << k;
  // The probe: a plausible fp32 GEMM rate, measured once per thread count.
  const double peak = measured_peak_flops(1);
  EXPECT_GT(peak, 1e8);
  EXPECT_LT(peak, 1e13);
  EXPECT_EQ(measured_peak_flops(1), peak);
}

}  // namespace
}  // namespace bl
