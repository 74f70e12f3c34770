// The architecture zoo: every tiny preset (one per family) validates, decodes
// incrementally exactly like its full forward pass, passes a finite-difference
// gradient check and learns on tinyshakespeare; every published shape counts
// without allocation, exactly where the release is representable.
#include <gtest/gtest.h>

#include <numeric>

#include "component_checks.h"
#include "core/model.h"
#include "core/model_report.h"
#include "core/presets.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "gradcheck.h"
#include "tensor/gemm.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH
#include "train/trainer.h"

namespace bl {
namespace {

class TinyPreset : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyPreset, ValidatesAndRoundTrips) {
  Preset p = load_preset(GetParam());
  EXPECT_TRUE(validation_errors(p).empty());
  EXPECT_FALSE(p.description.empty());
  EXPECT_EQ(preset_from_json(preset_to_json(p)), p);
  // The report counts the same model the trainer builds.
  LanguageModel model(p.model);
  ModelReport r = report_model(p.model, p.train.seq_len);
  EXPECT_EQ(r.params, model.num_parameters());
  EXPECT_DOUBLE_EQ(r.flops_per_token, model.flops_per_token(p.train.seq_len));
  EXPECT_LE(r.active_params, r.params);
}

TEST_P(TinyPreset, IncrementalDecodingMatchesFullForward) {
  set_num_threads(1);  // many one-token passes: keep ctest -j2 from oversubscribing
  Preset p = load_preset(GetParam());
  LanguageModel model(p.model);
  Rng rng(3);
  model.init_weights(rng);
  test::randomize(model, rng, 0.05f);
  // 40 tokens: longer than the tiny presets' windows (32) and scan chunks (32).
  EXPECT_LT(test::cached_decoding_error(model, 40, test::one_at_a_time(40), 40), 1e-4)
      << "one token at a time";
  EXPECT_LT(test::cached_decoding_error(model, 40, {5, 1, 11, 3, 5, 1, 11, 3}, 40), 1e-4)
      << "mixed pieces";
}

TEST_P(TinyPreset, LossGradientMatchesFiniteDifferences) {
  Preset p = load_preset(GetParam());
  LanguageModel model(p.model);
  Rng rng(5);
  model.init_weights(rng);
  test::randomize(model, rng, 0.1f);
  std::vector<int32_t> x, y;
  for (int i = 0; i < 2 * 12; ++i) {
    x.push_back(int32_t((i * 5 + 1) % 65));
    y.push_back(int32_t((i * 11 + 4) % 65));
  }
  test::GradCheckOptions o;
  o.max_checks_per_input = 3;  // every tensor, a few elements each: the model is big
  // The output is the scalar loss (~4), so float32 rounding in the difference
  // quotient is ~1e-7 * 4 / h = 4e-4 at h = 1e-3, under atol; the small step keeps
  // MoE top-k routing and ReLU kinks from flipping inside the difference.
  o.h = 1e-3;
  // A smooth function's one-sided differences agree to O(h |f''|) ~ 1e-3; a
  // routing flip makes them differ by O(1) / h.
  o.kink_tol = 0.1;
  // Thousands of tiny forward passes: one thread, so ctest -j2 never oversubscribes.
  set_num_threads(1);
  std::vector<Parameter*> trained;  // frozen buffers (MoE selection bias) have no gradient
  for (Parameter* p : model.parameters())
    if (p->trainable()) trained.push_back(p);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return model.loss(Tokens{x.data(), Shape{2, 12}}, Tokens{y.data(), Shape{2, 12}});
      },
      trained, o));
}

// Each family learns real text: 30 steps on tinyshakespeare lower the loss.
TEST_P(TinyPreset, LearnsOnTinyShakespeare) {
  Preset p = load_preset(GetParam());
  auto text =
      read_text_file(std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt");
  auto tok = make_tokenizer("char", text);
  TextDataset data(text, *tok, 0.1);
  p.model.vocab_size = tok->vocab_size();
  LanguageModel model(p.model);
  Rng rng(uint64_t(p.train.seed));
  model.init_weights(rng);
  TrainConfig tc = p.train;
  tc.max_steps = 30;
  tc.warmup_steps = 3;
  tc.batch_size = 8;
  tc.seq_len = 64;
  tc.learning_rate = 3e-3;
  tc.eval_interval = 0;
  tc.eval_batches = 2;
  tc.threads = 1;
  Trainer trainer(model, tc, data);
  struct Rec : Callback {
    std::vector<double> loss;
    void on_step_end(Trainer&, const StepMetrics& m) override { loss.push_back(m.loss); }
  } rec;
  trainer.add_callback(&rec);
  TrainSummary s = trainer.train();
  ASSERT_EQ(s.status, RunStatus::kCompleted) << s.message;
  auto mean = [](auto b, auto e) { return std::accumulate(b, e, 0.0) / double(e - b); };
  const double first = mean(rec.loss.begin(), rec.loss.begin() + 3);
  const double last = mean(rec.loss.end() - 5, rec.loss.end());
  // ln 65 = 4.17 at the start; measured drops after 30 steps are 0.5-1.1 nats.
  EXPECT_LT(last, first - 0.4) << "first " << first << " last " << last;
  EXPECT_LT(last, 3.5);
}

std::vector<std::string> tiny_presets() {
  std::vector<std::string> v;
  for (const std::string& n : preset_names())
    if (n.ends_with("-tiny")) v.push_back(n);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Families, TinyPreset, ::testing::ValuesIn(tiny_presets()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(Zoo, EveryIssueFamilyHasATinyPreset) {
  const auto names = tiny_presets();
  for (const char* want :
       {"gpt-tiny", "llama-tiny", "gemma-tiny", "gemma3-tiny", "mistral-tiny", "mixtral-tiny",
        "olmo2-tiny", "deepseek-v2-tiny", "deepseek-v3-tiny", "llama4-tiny", "qwen-next-tiny",
        "nemotron-h-tiny", "falcon-h1-tiny", "jamba-tiny", "mamba2-tiny", "mamba3-tiny"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

// Published parameter counts where Blocklab's config represents the release exactly.
TEST(Zoo, PublishedShapesCountExactly) {
  struct Ref {
    const char* name;
    int64_t params, active;
  };
  for (Ref r :
       {Ref{"gpt2-124m", 124'439'808, 124'439'808}, Ref{"llama2-7b", 6'738'415'616, 6'738'415'616},
        Ref{"mistral-7b", 7'241'732'096, 7'241'732'096},
        Ref{"gemma-2b", 2'506'172'416, 2'506'172'416},
        Ref{"mixtral-8x7b", 46'702'792'704, 12'879'925'248}}) {
    ModelReport rep = report_model(load_architecture(r.name).model, 1024);
    EXPECT_EQ(rep.params, r.params) << r.name;
    EXPECT_EQ(rep.active_params, r.active) << r.name;
  }
}

TEST(Zoo, EveryPublishedShapeValidatesAndCounts) {
  const auto names = architecture_names();
  EXPECT_GE(names.size(), 16u);
  for (const std::string& n : names) {
    Preset p = load_architecture(n);
    ModelReport r = report_model(p.model, p.train.seq_len);
    EXPECT_GT(r.params, 100'000'000) << n;
    EXPECT_LE(r.active_params, r.params) << n;
    EXPECT_GT(r.flops_per_token, 2.0 * double(r.active_params - r.embedding_params)) << n;
    int64_t layers = 0;
    for (const LayerTypeStats& t : r.by_type) layers += t.layers;
    EXPECT_EQ(layers, p.model.n_layers) << n;
  }
  // MoE shapes activate a fraction of their weights.
  ModelReport v3 = report_model(load_architecture("deepseek-v3").model, 4096);
  EXPECT_LT(double(v3.active_params), 0.1 * double(v3.params));
  EXPECT_GT(v3.mtp_params, 0);
}

}  // namespace
}  // namespace bl
