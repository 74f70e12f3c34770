// A fine-tune saves its adapter every checkpoint interval and at the end, so a
// killed LoRA run keeps the adapter of its last interval.
#include "lora/adapter_saver.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "export/llama_gguf_names.h"
#include "lora/adapter_io.h"
#include "lora/lora.h"
#include "peft_test_util.h"
#include "temp_files.h"
#include "train/trainer.h"

namespace bl {
namespace {

namespace fs = std::filesystem;

std::vector<float> adapter_values(Module& model) {
  std::vector<float> v;
  for (auto& [name, p] : lora_parameters(model))
    v.insert(v.end(), p->data(), p->data() + p->numel());
  return v;
}

void run_and_check(const std::string& file_name, int threads) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "to be or not to be, that is the question. ";
  auto tok = make_tokenizer("char", text);
  TextDataset data(text, *tok, 0.1);
  ModelConfig cfg = test::peft_model_config(true, 32);
  cfg.vocab_size = tok->vocab_size();
  LanguageModel model(cfg);
  test::init_model(model, 2);
  apply_lora(model, 4, 8.0f, {"q", "v"}, 3);
  TrainConfig tc;
  tc.seq_len = 16;
  tc.batch_size = 2;
  tc.max_steps = 7;
  tc.warmup_steps = 1;
  tc.learning_rate = 1e-2;
  tc.eval_interval = 0;
  tc.threads = threads;
  Trainer trainer(model, tc, data);
  const std::string path = (fs::path(dir.path()) / file_name).string();
  const std::string copy = (fs::path(dir.path()) / ("step6-" + file_name)).string();
  std::vector<int64_t> saved_at;
  std::vector<float> at_step6;
  AdapterSaver saver([&] { return path; }, 3,
                     [&](int64_t step, const std::string& p) {
                       saved_at.push_back(step);
                       if (step == 6) {  // what a run killed during step 7 would have left on disk
                         fs::copy(p, copy, fs::copy_options::recursive);
                         at_step6 = adapter_values(model);
                       }
                     });
  trainer.add_callback(&saver);
  TrainSummary s = trainer.train();
  ASSERT_EQ(s.steps, 7) << s.message;
  EXPECT_EQ(trainer.replicas(), threads);
  EXPECT_EQ(saved_at, (std::vector<int64_t>{3, 6, 7}));
  EXPECT_EQ(saver.last_step(), 7);
  // Nothing half-written is left next to the adapter.
  for (auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().string().find(".new"), std::string::npos) << e.path();
    EXPECT_EQ(e.path().string().find(".old"), std::string::npos) << e.path();
  }
  // The interval save holds the step-6 adapter, the final one the trained adapter.
  LanguageModel probe(cfg);
  test::init_model(probe, 2);
  apply_lora(probe, 4, 8.0f, {"q", "v"}, 99);
  load_adapter(copy, probe);
  EXPECT_EQ(adapter_values(probe), at_step6);
  load_adapter(path, probe);
  EXPECT_EQ(adapter_values(probe), adapter_values(model));
  EXPECT_NE(at_step6, adapter_values(model));  // step 7 changed it
}

// On one thread and on two (data-parallel replicas of the adapters only).
class AdapterSaverThreads : public ::testing::TestWithParam<int> {};

TEST_P(AdapterSaverThreads, SavesEveryIntervalAndAtTheEndAsPeft) {
  run_and_check("adapter", GetParam());
}
TEST_P(AdapterSaverThreads, SavesEveryIntervalAndAtTheEndAsGguf) {
  run_and_check("adapter.gguf", GetParam());
}

// A GPT-style fine-tune begun when .gguf adapters were written in Blocklab's
// own layout (llama.cpp cannot run its base): resumed, it keeps that layout
// instead of failing at its first save.
TEST(AdapterSaver, ResumedRunKeepsItsOlderGgufLayout) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 20; ++i) text += "to be or not to be. ";
  auto tok = make_tokenizer("char", text);
  TextDataset data(text, *tok, 0.1);
  ModelConfig cfg = test::peft_model_config(true, 32);
  cfg.vocab_size = tok->vocab_size();
  cfg.block.attention = "mha";
  cfg.block.ffn = "standard";
  cfg.block.norm = "layer_norm";
  cfg.block.position = "learned";
  cfg.block.n_kv_heads.reset();
  ASSERT_FALSE(llama_cpp_incompatibility(cfg).empty());
  LanguageModel model(cfg);
  test::init_model(model, 2);
  apply_lora(model, 4, 8.0f, {"q", "v"}, 3);
  const std::string path = (fs::path(dir.path()) / "adapter.gguf").string();
  // What the run wrote before it was stopped.
  write_gguf_adapter_legacy(path, extract_adapter(model));
  TrainConfig tc;
  tc.seq_len = 16;
  tc.batch_size = 2;
  tc.max_steps = 2;
  tc.warmup_steps = 1;
  tc.eval_interval = 0;
  Trainer trainer(model, tc, data);
  AdapterSaver saver([&] { return path; }, 1);
  trainer.add_callback(&saver);
  const TrainSummary s = trainer.train();
  ASSERT_EQ(s.steps, 2) << s.message;
  EXPECT_EQ(saver.last_step(), 2);
  EXPECT_TRUE(is_blocklab_layout_gguf(path));
  LanguageModel probe(cfg);
  test::init_model(probe, 2);
  apply_lora(probe, 4, 8.0f, {"q", "v"}, 99);
  load_adapter(path, probe);
  EXPECT_EQ(adapter_values(probe), adapter_values(model));
  // A new GPT-style run still cannot start a .gguf adapter llama.cpp cannot load.
  fs::remove(path);
  AdapterSaver fresh([&] { return path; }, 1);
  Trainer again(model, tc, data);
  again.add_callback(&fresh);
  EXPECT_THROW(again.train(), AdapterError);
}

INSTANTIATE_TEST_SUITE_P(Threads, AdapterSaverThreads, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "threads"; });

}  // namespace
}  // namespace bl
