// A fine-tune saves its adapter every checkpoint interval and at the end, so a
// killed LoRA run keeps the adapter of its last interval.
#include "lora/adapter_saver.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/text_dataset.h"
#include "data/tokenizer.h"
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

INSTANTIATE_TEST_SUITE_P(Threads, AdapterSaverThreads, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "threads"; });

}  // namespace
}  // namespace bl
