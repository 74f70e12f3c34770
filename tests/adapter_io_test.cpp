// Adapters on disk without the base: PEFT directories (safetensors +
// adapter_config.json) and GGUF files round-trip exactly, hold only adapter
// tensors under the documented names, and adapters that do not fit the model
// fail with an error naming the tensor, leaving the model untouched.
#include "lora/adapter_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "lora/lora.h"
#include "peft_test_util.h"

namespace bl {
namespace {

namespace fs = std::filesystem;

class AdapterIo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bl_adapter_io_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// A model with trained-looking adapters (random B) on q and v (and rank 2 on down).
std::unique_ptr<LanguageModel> adapted_model(const ModelConfig& cfg, bool mixed_ranks = false) {
  auto m = std::make_unique<LanguageModel>(cfg);
  test::init_model(*m, 21);
  apply_lora(*m, 4, 8.0f, {"q", "v"}, 5);
  if (mixed_ranks) apply_lora(*m, 2, 6.0f, {"down"}, 6);
  Rng rng(7);
  for (auto& [n, p] : lora_parameters(*m))
    if (n.find("lora_B") != std::string::npos) p->init_normal(rng, 0.1f);
  return m;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const AdapterError& e) {
    return e.what();
  }
  return "(no AdapterError)";
}

TEST_F(AdapterIo, PeftNames) {
  EXPECT_EQ(peft_tensor_name("layers.3.attention.q_proj", "lora_A"),
            "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(peft_tensor_name("layers.0.ffn.down_proj", "lora_B"),
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
}

TEST_F(AdapterIo, RoundTripsThroughPeftAndGguf) {
  const ModelConfig cfg = test::peft_model_config();
  for (bool mixed : {false, true}) {
    auto src = adapted_model(cfg, mixed);
    const std::vector<int32_t> ids = test::token_ids(2 * 8, 40);
    const std::vector<float> want = test::logits_of(*src, ids, 2, 8);
    for (const std::string name : {"peft_dir", "adapter.gguf"}) {
      save_adapter(path(name), *src);
      LanguageModel dst(cfg);
      test::init_model(dst, 21);  // the same base
      const std::vector<float> base = test::logits_of(dst, ids, 2, 8);
      EXPECT_GT(test::max_abs_diff(base, want), 1e-3);
      load_adapter(path(name), dst);
      // GGUF (llama.cpp) has one alpha: the rank-2 layer's own alpha 6 is
      // folded into its B (x 6/8), which rounds.
      const bool folded = mixed && name == "adapter.gguf";
      EXPECT_LE(test::max_abs_diff(test::logits_of(dst, ids, 2, 8), want), folded ? 1e-5 : 0.0)
          << name;
      EXPECT_EQ(trainable_parameter_count(dst), trainable_parameter_count(*src));
      for (auto& [n, p] : dst.named_parameters())
        EXPECT_EQ(p->trainable(), n.find("lora_") != std::string::npos) << n;
      const Adapter a = read_adapter(path(name));
      EXPECT_EQ(a.rank, 4);
      EXPECT_EQ(a.alpha, 8.0f);
      EXPECT_EQ(a.layers.size(), mixed ? 6u : 4u);
      if (mixed) {
        EXPECT_EQ(a.layers.at("layers.1.ffn.down_proj").rank, 2);
        EXPECT_EQ(a.layers.at("layers.1.ffn.down_proj").alpha, folded ? 8.0f : 6.0f);
      }
      fs::remove_all(path(name));
    }
  }
}

TEST_F(AdapterIo, PeftFilesHoldOnlyAdapterTensors) {
  auto src = adapted_model(test::peft_model_config());
  save_adapter(path("a"), *src);
  SafetensorsFile st = read_safetensors(path("a/adapter_model.safetensors"));
  ASSERT_EQ(st.tensors.size(), 8u);
  const LoadedTensor& a =
      st.tensors.at("base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 64}));
  const LoadedTensor& b =
      st.tensors.at("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{32, 4}));
  std::ifstream f(path("a/adapter_config.json"));
  nlohmann::json cfg = nlohmann::json::parse(f);
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["target_modules"], (nlohmann::json{"q_proj", "v_proj"}));
  // Far smaller than the base model's weights.
  EXPECT_LT(fs::file_size(path("a/adapter_model.safetensors")),
            4u * uint64_t(src->num_parameters()) / 10);
}

TEST_F(AdapterIo, GgufLayout) {
  auto src = adapted_model(test::peft_model_config());
  save_adapter(path("x.gguf"), *src);
  std::ifstream f(path("x.gguf"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.substr(0, 4), "GGUF");
  // llama.cpp's layout (tests/gguf_test.cpp checks every key and shape).
  for (const char* s : {"blk.0.attn_q.weight.lora_a", "blk.1.attn_v.weight.lora_b",
                        "general.architecture", "adapter.lora.alpha"})
    EXPECT_NE(bytes.find(s), std::string::npos) << s;
  EXPECT_EQ(bytes.find("lora.rank"), std::string::npos);
  // Truncations and a bad magic are clean errors.
  for (size_t cut : {size_t(3), size_t(40), bytes.size() / 2, bytes.size() - 4}) {
    std::ofstream(path("cut.gguf"), std::ios::binary) << bytes.substr(0, cut);
    EXPECT_THROW(read_adapter(path("cut.gguf")), AdapterError) << cut;
  }
  std::string bad = bytes;
  bad[0] = 'X';
  std::ofstream(path("bad.gguf"), std::ios::binary) << bad;
  EXPECT_NE(error_of([&] { read_adapter(path("bad.gguf")); }).find("bad magic"), std::string::npos);
}

TEST_F(AdapterIo, MismatchedAdaptersNameTheTensor) {
  auto src = adapted_model(test::peft_model_config());
  save_adapter(path("p"), *src);
  save_adapter(path("g.gguf"), *src);
  const std::vector<int32_t> ids = test::token_ids(2 * 5, 40);
  for (const std::string file : {"p", "g.gguf"}) {
    // Shapes: v_proj with 4 kv heads is (64, 64), the adapter's B is (32, 4).
    ModelConfig wide = test::peft_model_config();
    wide.block.n_kv_heads = 4;
    LanguageModel m1(wide);
    test::init_model(m1);
    const std::vector<float> before = test::logits_of(m1, ids, 2, 5);
    const int64_t params = m1.num_parameters();
    std::string e = error_of([&] { load_adapter(path(file), m1); });
    EXPECT_NE(
        e.find("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight' has shape [32, 4]"),
        std::string::npos)
        << e;
    EXPECT_EQ(m1.num_parameters(), params);  // nothing attached
    EXPECT_EQ(test::logits_of(m1, ids, 2, 5), before);
    // Names: a one-layer model has no layers.1.
    ModelConfig one = test::peft_model_config();
    one.n_layers = 1;
    LanguageModel m2(one);
    e = error_of([&] { load_adapter(path(file), m2); });
    EXPECT_NE(e.find("layers.1.self_attn.q_proj.lora_A.weight' names no Linear layer"),
              std::string::npos)
        << e;
    // Ranks: the layer already carries a rank-8 adapter.
    LanguageModel m3(test::peft_model_config());
    apply_lora(m3, 8, 16.0f, {"q"});
    e = error_of([&] { load_adapter(path(file), m3); });
    EXPECT_NE(e.find("has rank 4 but layer 'layers.0.attention.q_proj' carries a rank-8 adapter"),
              std::string::npos)
        << e;
  }
  // A config whose r disagrees with the tensors (edited by hand: without the
  // manifest, which would refuse the edited file before its content is read).
  std::filesystem::remove(path("p/manifest.json"));
  {
    std::ifstream f(path("p/adapter_config.json"));
    nlohmann::json cfg = nlohmann::json::parse(f);
    cfg["r"] = 8;
    std::ofstream(path("p/adapter_config.json")) << cfg.dump();
  }
  std::string e = error_of([&] { read_adapter(path("p")); });
  EXPECT_NE(e.find("lora_A.weight' has rank 4 but adapter_config.json says r = 8"),
            std::string::npos)
      << e;
  EXPECT_NE(error_of([&] { read_adapter(path("missing")); }).find("cannot read"),
            std::string::npos);
}

}  // namespace
}  // namespace bl
