// Several adapters on one base in one batch: each row's logits equal running
// that adapter alone (attached the ordinary way), rows without adapter equal the
// base model, ranks differ up to max_rank, and batched generation samples each
// row from its own adapter exactly as generating it alone; on 1 and 2 threads.
#include "lora/multi_adapter.h"

#include <gtest/gtest.h>

#include <set>

#include "generate/sampler.h"
#include "lora/lora.h"
#include "peft_test_util.h"
#include "tensor/gemm.h"

namespace bl {
namespace {

// An adapter with random (non-zero) A and B on the targets.
Adapter make_adapter(const ModelConfig& cfg, int64_t rank, float alpha,
                     const std::vector<std::string>& targets, uint64_t seed) {
  LanguageModel m(cfg);
  apply_lora(m, rank, alpha, targets, seed);
  Rng rng(seed + 100);
  for (auto& [n, p] : lora_parameters(m))
    p->init_normal(rng, n.find("lora_B") != std::string::npos ? 0.3f : 0.2f);
  return extract_adapter(m);
}

// Every test on 1 and on 2 threads (the ops split their work over the threads).
class MultiAdapterThreads : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    previous_ = num_threads();
    set_num_threads(GetParam());
  }
  void TearDown() override { set_num_threads(previous_); }
  int previous_ = 1;
};

struct Fixture {
  ModelConfig cfg = test::peft_model_config();
  std::vector<Adapter> adapters;
  Fixture() {
    adapters.push_back(make_adapter(cfg, 4, 8.0f, {"q", "v"}, 1));
    adapters.push_back(make_adapter(cfg, 2, 2.0f, {"q", "k", "v", "o", "down"}, 2));
    adapters.push_back(make_adapter(cfg, 8, 32.0f, {"mlp"}, 3));
  }
  // The model with only adapter i attached (i = -1: the base).
  std::unique_ptr<LanguageModel> single(int32_t i) const {
    auto m = std::make_unique<LanguageModel>(cfg);
    test::init_model(*m, 9);
    if (i >= 0) attach_adapter(*m, adapters[size_t(i)]);
    return m;
  }
};

TEST_P(MultiAdapterThreads, EachRowEqualsItsAdapterAlone) {
  Fixture f;
  LanguageModel base(f.cfg);
  test::init_model(base, 9);
  MultiAdapter multi(base, 8);
  for (size_t i = 0; i < f.adapters.size(); ++i)
    EXPECT_EQ(multi.add(std::string("a").append(std::to_string(i)), f.adapters[i]), int32_t(i));
  const std::vector<int32_t> rows{1, -1, 0, 2, 1};
  const int64_t B = int64_t(rows.size()), T = 7, V = f.cfg.vocab_size;
  std::vector<int32_t> ids;
  for (int64_t b = 0; b < B; ++b) {
    auto r = test::token_ids(T, V, b);
    ids.insert(ids.end(), r.begin(), r.end());
  }
  multi.set_batch(rows);
  const std::vector<float> batched = test::logits_of(base, ids, B, T);
  for (int64_t b = 0; b < B; ++b) {
    auto alone = f.single(rows[size_t(b)]);
    std::vector<int32_t> row(ids.begin() + b * T, ids.begin() + (b + 1) * T);
    const std::vector<float> want = test::logits_of(*alone, row, 1, T);
    const std::vector<float> got(batched.begin() + b * T * V, batched.begin() + (b + 1) * T * V);
    EXPECT_LT(test::max_abs_diff(got, want), 1e-5) << "row " << b << " adapter " << rows[size_t(b)];
    if (rows[size_t(b)] >= 0) {  // the adapter really changes the output
      auto plain = f.single(-1);
      EXPECT_GT(test::max_abs_diff(got, test::logits_of(*plain, row, 1, T)), 1e-3);
    }
  }
  // No routing: the base model for every row.
  multi.set_batch({});
  auto plain = f.single(-1);
  EXPECT_EQ(test::logits_of(base, ids, B, T), test::logits_of(*plain, ids, B, T));
}

TEST_P(MultiAdapterThreads, ValidationAndDetach) {
  Fixture f;
  LanguageModel base(f.cfg);
  test::init_model(base, 9);
  const std::vector<int32_t> ids = test::token_ids(2 * 4, 40);
  const std::vector<float> before = test::logits_of(base, ids, 2, 4);
  {
    MultiAdapter multi(base, 4);
    multi.add("small", f.adapters[0]);
    try {
      multi.add("big", f.adapters[2]);  // rank 8 > max_rank 4
      ADD_FAILURE();
    } catch (const AdapterError& e) {
      EXPECT_NE(std::string(e.what()).find("lora_A.weight' has rank 8 above max_rank 4"),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(multi.add("small", f.adapters[1]), AdapterError);
    EXPECT_THROW(multi.set_batch({0, 1}), AdapterError);  // id 1 not loaded
    EXPECT_EQ(multi.id("small"), 0);
    multi.set_batch({0, 0, 0});  // 3 rows routed, 2 given
    EXPECT_THROW(test::logits_of(base, ids, 2, 4), std::invalid_argument);
    multi.set_batch({0, -1});
    EXPECT_NE(test::logits_of(base, ids, 2, 4), before);
    // Training through a bank is refused rather than silently not differentiated.
    const std::vector<int32_t> tg = test::token_ids(8, 40, 1);
    EXPECT_THROW(base.loss(Tokens{ids.data(), Shape{2, 4}}, Tokens{tg.data(), Shape{2, 4}}),
                 std::invalid_argument);
    current_graph().clear();
  }
  EXPECT_EQ(test::logits_of(base, ids, 2, 4), before);  // banks detached
}

// Batched generation: row b samples with adapter rows[b] and Rng b; each row's
// tokens equal generating it alone with that adapter and a copy of that Rng.
TEST_P(MultiAdapterThreads, GenerationSamplesEachRowFromItsAdapter) {
  Fixture f;
  LanguageModel base(f.cfg);
  test::init_model(base, 9);
  MultiAdapter multi(base, 8);
  for (size_t i = 0; i < f.adapters.size(); ++i) {
    std::string name(1, 'a');  // (not "a" + ...: GCC 12 warns falsely, -Wrestrict)
    name += std::to_string(i);
    multi.add(name, f.adapters[i]);
  }
  const std::vector<int32_t> rows{2, 0, -1, 1};
  std::vector<std::vector<int32_t>> prompts;
  for (size_t b = 0; b < rows.size(); ++b) prompts.push_back(test::token_ids(5, 40, int64_t(b)));
  for (float temperature : {0.0f, 1.0f}) {
    SamplingOptions opt;
    opt.temperature = temperature;
    opt.max_new_tokens = 12;
    std::vector<Rng> rngs;
    for (size_t b = 0; b < rows.size(); ++b) rngs.emplace_back(100 + b);
    multi.set_batch(rows);
    const auto out = generate_batch(base, prompts, opt, rngs);
    ASSERT_EQ(out.size(), rows.size());
    std::set<std::vector<int32_t>> distinct;
    for (size_t b = 0; b < rows.size(); ++b) {
      auto alone = f.single(rows[b]);
      std::vector<Rng> one{Rng(100 + b)};
      const auto want = generate_batch(*alone, {prompts[b]}, opt, one);
      EXPECT_EQ(out[b], want[0]) << "row " << b << " temperature " << temperature;
      EXPECT_EQ(out[b].size(), 12u);
      // Also equal to the ordinary single-sequence sampler.
      Rng r(100 + b);
      EXPECT_EQ(out[b], generate(*alone, prompts[b], opt, r)) << "row " << b;
      distinct.insert(out[b]);
    }
    EXPECT_GT(distinct.size(), 1u);
  }
  // Context limit: max_seq_len 32, prompt 5 -> at most 28 new tokens.
  SamplingOptions longer;
  longer.max_new_tokens = 100;
  std::vector<Rng> rngs(rows.size());
  multi.set_batch(rows);
  EXPECT_EQ(generate_batch(base, prompts, longer, rngs)[0].size(), 28u);
  EXPECT_THROW(generate_batch(base, {{1, 2}, {1}}, longer, rngs), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Threads, MultiAdapterThreads, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "threads"; });

}  // namespace
}  // namespace bl
