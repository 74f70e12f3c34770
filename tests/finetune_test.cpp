// build_finetune (the fine-tune construction shared by the CLI and the GUI):
// base weights come from the checkpoint, the adapters are the only trainable
// parameters (hand-counted), a fresh adapter leaves the logits unchanged, and
// count_finetune on a storage-less model reports exactly the same counts; a
// fine-tune trains on the data-parallel path (2 threads) as on one.
#include "lora/finetune.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <tuple>

#include "data/text_dataset.h"
#include "expect_error.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "lora/lora.h"
#include "peft_test_util.h"
#include "train/trainer.h"

namespace bl {
namespace {

namespace fs = std::filesystem;

class Finetuning : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bl_finetune_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    tok_ = make_tokenizer("char", "abcdefghijklmnopqrstuvwxyz .,;:!?'\nABCD");
    ModelConfig cfg = test::peft_model_config();
    cfg.vocab_size = tok_->vocab_size();
    base_ = std::make_unique<LanguageModel>(cfg);
    test::init_model(*base_, 3);
    save_checkpoint(ckpt(), *base_, TrainConfig{}, *tok_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string ckpt() const { return (dir_ / "base").string(); }
  fs::path dir_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<LanguageModel> base_;
};

TEST_F(Finetuning, LoadsTheBaseAndTrainsOnlyAdapters) {
  FinetuneSpec spec;
  spec.base_checkpoint = ckpt();
  spec.lora.rank = 4;
  spec.lora.targets = {"q", "v"};
  Finetune ft = build_finetune(spec);
  EXPECT_EQ(ft.tokenizer->to_json(), tok_->to_json());
  // d_model 64, 4 heads of 16, 2 kv heads: q 64 -> 64, v 64 -> 32; two layers.
  const int64_t hand = 2 * (4 * (64 + 64) + 4 * (64 + 32));
  EXPECT_EQ(ft.counts.trainable, hand);
  EXPECT_EQ(ft.counts.base, base_->num_parameters());
  EXPECT_EQ(ft.counts.total, base_->num_parameters() + hand);
  EXPECT_EQ(ft.counts.adapted_layers, 4);
  EXPECT_EQ(trainable_parameter_count(*ft.model), hand);
  const std::vector<int32_t> ids = test::token_ids(16, tok_->vocab_size());
  EXPECT_LT(
      test::max_abs_diff(test::logits_of(*ft.model, ids, 2, 8), test::logits_of(*base_, ids, 2, 8)),
      1e-5);

  const FinetuneCounts meta = count_finetune(ft.info.model, spec.lora);
  EXPECT_EQ(meta.trainable, ft.counts.trainable);
  EXPECT_EQ(meta.total, ft.counts.total);
  EXPECT_EQ(meta.base, ft.counts.base);
  EXPECT_EQ(meta.adapted_layers, ft.counts.adapted_layers);

  const nlohmann::json s = ft.summary("/x/adapter");
  EXPECT_EQ(s["rank"], 4);
  EXPECT_EQ(s["targets"], nlohmann::json({"q", "v"}));
  EXPECT_EQ(s["trainable_params"], hand);
  EXPECT_TRUE(s["quantize"].is_null());
  EXPECT_EQ(s["adapter"], "/x/adapter");
  EXPECT_EQ(s["layers"].size(), 4u);
  EXPECT_EQ(spec.lora.str(), "r4 q,v");
}

TEST_F(Finetuning, QuantizedBaseKeepsTheCounts) {
  FinetuneSpec spec;
  spec.base_checkpoint = ckpt();
  spec.lora = {2, 4.0f, {"attention", "mlp"}};
  spec.quantize = "nf4";
  Finetune ft = build_finetune(spec);
  EXPECT_EQ(ft.quant_name, "nf4");
  EXPECT_GT(ft.quant.quantized, 0);
  EXPECT_LT(ft.quant.bytes_after, ft.quant.bytes_before);
  EXPECT_EQ(ft.counts.adapted_layers, 2 * 7);
  const FinetuneCounts meta = count_finetune(ft.info.model, spec.lora);
  EXPECT_EQ(meta.trainable, ft.counts.trainable);
  EXPECT_EQ(meta.total, ft.counts.total);
  EXPECT_EQ(ft.summary("a")["quantize"], "nf4");
}

TEST_F(Finetuning, BadSpecsThrow) {
  FinetuneSpec spec;
  spec.base_checkpoint = ckpt();
  spec.lora.targets = {"nonsense"};
  EXPECT_THROW(build_finetune(spec), std::invalid_argument);
  EXPECT_THROW(count_finetune(base_->config(), spec.lora), std::invalid_argument);
  spec.lora.targets = {"q"};
  spec.quantize = "int3";
  EXPECT_THROW(build_finetune(spec), std::invalid_argument);
  spec.quantize = "";
  spec.base_checkpoint = (dir_ / "missing").string();
  EXPECT_THROW(build_finetune(spec), CheckpointError);
}

// Fine-tune checkpoints: only the adapters are written; load_finetune_checkpoint
// rebuilds base + adapters from the recorded spec, refusing a changed base,
// and whole-model loaders refuse the adapter-only file.
TEST_F(Finetuning, FinetuneCheckpointsHoldOnlyTheAdapters) {
  FinetuneSpec spec;
  spec.base_checkpoint = ckpt();
  spec.lora = {2, 4.0f, {"q", "v"}};
  spec.seed = 5;
  Finetune ft = build_finetune(spec);
  EXPECT_EQ(ft.base_sha256, sha256_file(ckpt() + "/model.safetensors"));
  float x = 0.25f;  // distinct, non-zero adapter values (B starts at zero)
  for (auto& [name, p] : lora_parameters(*ft.model))
    for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] = (x += 0.001f);
  const std::string dir = (dir_ / "ft").string();
  save_checkpoint(dir, *ft.model, TrainConfig{}, *ft.tokenizer, nullptr, ft.summary("/a"));
  const SafetensorsFile file = read_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(file.tensors.size(), lora_parameters(*ft.model).size());
  EXPECT_EQ(read_checkpoint_info(dir).finetune["base_sha256"], ft.base_sha256);

  Finetune back = load_finetune_checkpoint(dir);
  EXPECT_EQ(back.lora.rank, 2);
  EXPECT_EQ(back.seed, 5u);
  const auto a = lora_parameters(*ft.model), b = lora_parameters(*back.model);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(std::equal(a[i].second->data(), a[i].second->data() + a[i].second->numel(),
                           b[i].second->data()))
        << a[i].first;
  }
  const std::vector<int32_t> ids = test::token_ids(16, tok_->vocab_size());
  EXPECT_EQ(test::max_abs_diff(test::logits_of(*ft.model, ids, 2, 8),
                               test::logits_of(*back.model, ids, 2, 8)),
            0.0);

  // Whole-model loading refuses it, naming the base; the reverse is refused too.
  LanguageModel plain(ft.info.model);
  const std::string msg = test::error_of<CheckpointError>([&] { load_model_weights(dir, plain); });
  EXPECT_TRUE(test::contains(msg, "a fine-tune checkpoint")) << msg;
  EXPECT_TRUE(test::contains(msg, ckpt())) << msg;
  EXPECT_TRUE(test::contains(
      test::error_of<CheckpointError>([&] { load_trainable_weights(ckpt(), *back.model); }),
      "not a fine-tune checkpoint"));
  // Another LoRA spec does not fit the stored adapters.
  FinetuneSpec other = spec;
  other.lora.targets = {"q", "k", "v"};
  Finetune wider = build_finetune(other);
  EXPECT_TRUE(test::contains(
      test::error_of<CheckpointError>([&] { load_trainable_weights(dir, *wider.model); }),
      "k_proj.lora_A.weight' is missing"));

  // A changed base is refused.
  save_checkpoint(ckpt(), *base_, TrainConfig{}, *tok_);  // same weights: same SHA-256
  EXPECT_NO_THROW(load_finetune_checkpoint(dir));
  base_->named_parameters()[0].second->data()[0] += 1.0f;
  save_checkpoint(ckpt(), *base_, TrainConfig{}, *tok_);
  EXPECT_TRUE(
      test::contains(test::error_of<CheckpointError>([&] { load_finetune_checkpoint(dir); }),
                     "SHA-256 differs from the one recorded when the fine-tune began"));
}

// Trains a fine-tune of the base (quantized or not) for a few steps on
// `threads` threads; frozen base weights are shared by every data-parallel
// replica and must need none of their own.
class FinetuneThreads : public Finetuning,
                        public ::testing::WithParamInterface<std::tuple<std::string, int>> {
 protected:
  struct Trained {
    TrainSummary summary;
    int replicas = 0;
    std::map<std::string, std::vector<float>> adapters, frozen;
  };
  Trained train(int threads) {
    FinetuneSpec spec;
    spec.base_checkpoint = ckpt();
    spec.lora = {4, 8.0f, {"q", "v", "down"}};
    spec.quantize = std::get<0>(GetParam());
    spec.seed = 2;
    Finetune ft = build_finetune(spec);
    std::string text;
    for (int i = 0; i < 60; ++i) text += "the quick brown fox jumps over the lazy dog. ";
    TextDataset data(text, *ft.tokenizer);
    TrainConfig cfg;
    cfg.batch_size = 4;
    cfg.seq_len = 16;
    cfg.max_steps = 4;
    cfg.warmup_steps = 0;
    cfg.learning_rate = 1e-2;
    cfg.eval_interval = 0;
    cfg.eval_batches = 1;
    cfg.checkpoint_interval = 0;
    cfg.threads = threads;
    Trainer trainer(*ft.model, cfg, data);
    Trained t;
    t.summary = trainer.train();
    t.replicas = trainer.replicas();
    for (auto& [name, p] : ft.model->named_parameters())
      if (p->data())
        (p->trainable() ? t.adapters : t.frozen)[name].assign(p->data(), p->data() + p->numel());
    return t;
  }
};

TEST_P(FinetuneThreads, TrainsOnlyTheAdapters) {
  const int threads = std::get<1>(GetParam());
  const Trained t = train(threads);
  ASSERT_EQ(t.summary.status, RunStatus::kCompleted) << t.summary.message;
  EXPECT_EQ(t.summary.steps, 4);
  EXPECT_EQ(t.replicas, threads);     // 2 threads: the data-parallel path
  ASSERT_EQ(t.adapters.size(), 12u);  // A and B of q, v, down in two layers
  // The base stayed as loaded: float weights equal the checkpoint's.
  size_t compared = 0;
  for (const auto& [name, p] : base_->named_parameters()) {
    const auto it = t.frozen.find(name);
    if (it == t.frozen.end()) continue;
    ++compared;
    EXPECT_TRUE(std::equal(it->second.begin(), it->second.end(), p->data())) << name;
  }
  EXPECT_GE(compared, 5u);  // at least the embedding and the norms
  bool trained = false;
  for (const auto& [name, v] : t.adapters)
    if (name.find("lora_B") != std::string::npos)
      for (float x : v) trained |= x != 0;  // B starts at zero
  EXPECT_TRUE(trained);
  if (threads == 1) return;
  // Same data and update as one thread; only the order of the sums differs.
  const Trained one = train(1);
  EXPECT_NEAR(t.summary.final_train_loss, one.summary.final_train_loss, 1e-4);
  for (const auto& [name, v] : one.adapters)
    EXPECT_LT(test::max_abs_diff(t.adapters.at(name), v), 1e-4) << name;
}

INSTANTIATE_TEST_SUITE_P(LoraAndQLoRA, FinetuneThreads,
                         ::testing::Combine(::testing::Values("", "nf4"), ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).empty() ? "Lora" : "QLoRA") +
                                  "_" + std::to_string(std::get<1>(info.param)) + "threads";
                         });

TEST(FinetuneSpecJson, RoundTripsAndNamesBadFields) {
  Finetune ft;
  ft.base_checkpoint = "/b";
  ft.base_sha256 = "abc";
  ft.lora = {4, 8.0f, {"q", "down"}};
  ft.seed = 123456789012345ULL;
  ft.quant_name = "nf4";
  const FinetuneSpec s = finetune_spec_from_json(ft.summary("/a"));
  EXPECT_EQ(s.base_checkpoint, "/b");
  EXPECT_EQ(s.base_sha256, "abc");
  EXPECT_EQ(s.lora.rank, 4);
  EXPECT_EQ(s.lora.alpha, 8.0f);
  EXPECT_EQ(s.lora.targets, (std::vector<std::string>{"q", "down"}));
  EXPECT_EQ(s.seed, 123456789012345ULL);
  EXPECT_EQ(s.quantize, "nf4");
  nlohmann::json j = ft.summary("/a");
  j.erase("rank");
  EXPECT_TRUE(
      test::contains(test::error_of<std::invalid_argument>([&] { finetune_spec_from_json(j); }),
                     "missing \"rank\""));
  j = ft.summary("/a");
  j["targets"] = nlohmann::json::array();
  EXPECT_TRUE(
      test::contains(test::error_of<std::invalid_argument>([&] { finetune_spec_from_json(j); }),
                     "\"targets\" must be a non-empty array"));
}

}  // namespace
}  // namespace bl
