// adapter_config.json read as Hugging Face PEFT reads it: use_rslora,
// fan_in_fan_out, rank_pattern / alpha_pattern keys by suffix or regex, a
// regex or list target_modules; DoRA, modules_to_save and bias adapters
// refused naming the key; written with PEFT's keys only and the base named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lora/adapter_io.h"
#include "lora/lora.h"
#include "peft_test_util.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class PeftOptions : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bl_peft_options_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    // q and v at rank 4 / alpha 8, down at rank 2 / alpha 6, random B.
    model_ = std::make_unique<LanguageModel>(cfg_);
    test::init_model(*model_, 21);
    apply_lora(*model_, 4, 8.0f, {"q", "v"}, 5);
    apply_lora(*model_, 2, 6.0f, {"down"}, 6);
    Rng rng(7);
    for (auto& [n, p] : lora_parameters(*model_))
      if (n.find("lora_B") != std::string::npos) p->init_normal(rng, 0.1f);
    save_adapter(adapter(), *model_, "/models/base-run");
    fs::remove(fs::path(adapter()) / "manifest.json");  // as PEFT writes it: edits allowed
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string adapter() const { return (dir_ / "peft").string(); }
  json config() const {
    std::ifstream f(fs::path(adapter()) / "adapter_config.json");
    return json::parse(f);
  }
  void set_config(const json& j) const {
    std::ofstream(fs::path(adapter()) / "adapter_config.json") << j.dump(2);
  }
  std::string error_reading() const {
    try {
      read_adapter(adapter());
    } catch (const AdapterError& e) {
      return e.what();
    }
    return "(read without error)";
  }
  const ModelConfig cfg_ = test::peft_model_config();
  std::unique_ptr<LanguageModel> model_;
  fs::path dir_;
};

TEST_F(PeftOptions, WrittenWithPeftKeysOnlyAndTheBaseNamed) {
  const json c = config();
  EXPECT_EQ(c["base_model_name_or_path"], "/models/base-run");
  EXPECT_FALSE(c.contains("library"));
  for (const char* k :
       {"peft_type", "task_type", "r", "lora_alpha", "target_modules", "rank_pattern",
        "alpha_pattern", "lora_dropout", "bias", "fan_in_fan_out", "use_rslora", "use_dora",
        "modules_to_save", "init_lora_weights", "inference_mode"})
    EXPECT_TRUE(c.contains(k)) << k;
  EXPECT_EQ(c.size(), 16u);
  EXPECT_EQ(read_adapter(adapter()).base_model, "/models/base-run");
}

TEST_F(PeftOptions, RsLoraScalesByAlphaOverRootRank) {
  json c = config();
  c["use_rslora"] = true;
  set_config(c);
  const Adapter a = read_adapter(adapter());
  for (auto& [path, l] : a.layers) {
    const float peft_alpha = l.rank == 4 ? 8.0f : 6.0f;
    EXPECT_NEAR(l.scaling(), peft_alpha / std::sqrt(float(l.rank)), 1e-6) << path;
  }
  // The model it builds differs from the plain-LoRA reading of the same files.
  LanguageModel plain(cfg_), rs(cfg_);
  test::init_model(plain, 21);
  test::init_model(rs, 21);
  attach_adapter(rs, a);
  c["use_rslora"] = false;
  set_config(c);
  attach_adapter(plain, read_adapter(adapter()));
  const auto ids = test::token_ids(16, 40);
  EXPECT_GT(test::max_abs_diff(test::logits_of(rs, ids, 2, 8), test::logits_of(plain, ids, 2, 8)),
            1e-4);
  EXPECT_EQ(
      test::max_abs_diff(test::logits_of(plain, ids, 2, 8), test::logits_of(*model_, ids, 2, 8)),
      0.0);
}

TEST_F(PeftOptions, PatternKeysMatchBySuffixOrRegexLikePeft) {
  json c = config();
  c["rank_pattern"] = {{"down_proj", 2}};                                 // a suffix
  c["alpha_pattern"] = {{"model\\.layers\\.[01]\\.mlp\\.down_proj", 6}};  // a regex
  set_config(c);
  Adapter a = read_adapter(adapter());
  for (auto& [path, l] : a.layers)
    EXPECT_EQ(l.alpha, path.find("down") != std::string::npos ? 6.0f : 8.0f) << path;
  c["rank_pattern"] = json::object();
  set_config(c);
  EXPECT_NE(error_reading().find("says r = 4"), std::string::npos) << error_reading();
  c["rank_pattern"] = {{"(", 2}};
  set_config(c);
  EXPECT_NE(error_reading().find("rank_pattern key '('"), std::string::npos) << error_reading();
}

TEST_F(PeftOptions, TargetModulesAsRegexOrListMustCoverTheAdaptedModules) {
  json c = config();
  c["target_modules"] = ".*\\.(q_proj|v_proj|down_proj)";
  set_config(c);
  EXPECT_EQ(read_adapter(adapter()).layers.size(), 6u);
  c["target_modules"] = ".*\\.q_proj";
  set_config(c);
  EXPECT_NE(error_reading().find("target_modules does not cover 'model.layers.0.self_attn.v_proj'"),
            std::string::npos)
      << error_reading();
  c["target_modules"] = {"q_proj", "v_proj"};
  set_config(c);
  EXPECT_NE(error_reading().find("does not cover 'model.layers.0.mlp.down_proj'"),
            std::string::npos)
      << error_reading();
  c["target_modules"] = {"q_proj", "v_proj", "down_proj"};
  set_config(c);
  EXPECT_EQ(read_adapter(adapter()).layers.size(), 6u);
  c["target_modules"] = "([";
  set_config(c);
  EXPECT_NE(error_reading().find("target_modules is not a valid regular expression"),
            std::string::npos);
  c["target_modules"] = std::string(300, 'a');
  set_config(c);
  EXPECT_NE(error_reading().find("longer than 256"), std::string::npos);
  // Patterns that would blow up the automaton or the matcher are refused.
  c["target_modules"] = "(a{1000}){1000}";
  set_config(c);
  EXPECT_NE(error_reading().find("counted repetition"), std::string::npos) << error_reading();
  c["target_modules"] = "(q)\\1_proj";
  set_config(c);
  EXPECT_NE(error_reading().find("not a valid regular expression"), std::string::npos)
      << error_reading();
  c["target_modules"] = "(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*x";  // backtracking would hang
  set_config(c);
  EXPECT_NE(error_reading().find("does not cover"), std::string::npos) << error_reading();
}

// fuzz_adapter_config found this: a huge "r" was converted to int64 without a
// range check (undefined behaviour under UBSan).
TEST_F(PeftOptions, OutOfRangeNumbersAreRefusedNotConverted) {
  const json base = config();
  for (const auto& [key, value, says] :
       {std::tuple{"r", json::parse("2266666666666666666666666666666666666666666666"),
                   "r must be an integer"},
        std::tuple{"r", json(2.5), "r must be an integer"},
        std::tuple{"lora_alpha", json(1e300), "lora_alpha (1e+300) is out of range"},
        std::tuple{"rank_pattern", json{{"down_proj", 1e200}}, "rank_pattern for"},
        std::tuple{"alpha_pattern", json{{"down_proj", -1e100}}, "is out of range"}}) {
    json c = base;
    c[key] = value;
    set_config(c);
    EXPECT_NE(error_reading().find(says), std::string::npos) << key << ": " << error_reading();
  }
}

TEST_F(PeftOptions, FanInFanOutKeepsTheShapesOfAAndB) {
  json c = config();
  c["fan_in_fan_out"] = true;
  set_config(c);
  LanguageModel m(cfg_);
  test::init_model(m, 21);
  attach_adapter(m, read_adapter(adapter()));
  const auto ids = test::token_ids(16, 40);
  EXPECT_EQ(test::max_abs_diff(test::logits_of(m, ids, 2, 8), test::logits_of(*model_, ids, 2, 8)),
            0.0);
}

TEST_F(PeftOptions, UnsupportedPeftFeaturesAreRefusedNamingTheKey) {
  const json base = config();
  struct Case {
    const char* key;
    json value;
    const char* says;
  };
  for (const Case& k :
       {Case{"use_dora", true, "use_dora: DoRA"},
        Case{"modules_to_save", json::array({"lm_head"}), "modules_to_save"},
        Case{"bias", "all", "bias: training biases ('all')"}, Case{"lora_bias", true, "lora_bias"},
        Case{"layer_replication", json::array({json::array({0, 1})}), "layer_replication"}}) {
    json c = base;
    c[k.key] = k.value;
    set_config(c);
    const std::string e = error_reading();
    EXPECT_NE(e.find(k.says), std::string::npos) << k.key << ": " << e;
    EXPECT_NE(e.find("is not supported"), std::string::npos) << e;
  }
  json ok = base;
  ok["modules_to_save"] = nullptr;
  ok["bias"] = "none";
  set_config(ok);
  EXPECT_EQ(read_adapter(adapter()).layers.size(), 6u);
}

}  // namespace
}  // namespace bl
