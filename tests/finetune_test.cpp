// build_finetune (the fine-tune construction shared by the CLI and the GUI):
// base weights come from the checkpoint, the adapters are the only trainable
// parameters (hand-counted), a fresh adapter leaves the logits unchanged, and
// count_finetune on a storage-less model reports exactly the same counts.
#include "lora/finetune.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "lora/lora.h"
#include "peft_test_util.h"

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

}  // namespace
}  // namespace bl
