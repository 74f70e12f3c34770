#include "core/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/presets.h"
#include "expect_error.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

template <class F>
std::string error_of(F&& f) {
  return test::error_of<ConfigError>(std::forward<F>(f));
}

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

namespace fs = std::filesystem;

// All validation messages joined (one per line), for substring checks.
std::string errors_of(const ModelConfig& m) {
  std::string s;
  for (auto& e : validation_errors(m)) s += e + "\n";
  return s;
}

// A valid small config used as the base of the rule tests.
ModelConfig valid_config() {
  ModelConfig m;
  m.block.d_model = 64;
  m.block.n_heads = 4;
  m.block.d_ff = 256;
  m.block.max_seq_len = 128;
  m.vocab_size = 65;
  m.n_layers = 2;
  return m;
}

fs::path temp_file(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / "blocklab_config_test";
  fs::create_directories(dir);
  return dir / name;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

// ---------------------------------------------------------------- defaults

TEST(BlockConfig, DefaultsMatchLmxlab) {
  BlockConfig b;
  EXPECT_EQ(b.attention, "mha");
  EXPECT_EQ(b.ffn, "standard");
  EXPECT_EQ(b.norm, "layer_norm");
  EXPECT_EQ(b.position, "sinusoidal");
  EXPECT_EQ(b.d_model, 512);
  EXPECT_EQ(b.n_heads, 8);
  EXPECT_FALSE(b.n_kv_heads);
  EXPECT_EQ(b.d_ff, 2048);
  EXPECT_TRUE(b.bias);
  EXPECT_EQ(b.dropout, 0.0);
  EXPECT_EQ(b.norm_eps, 1e-5);
  EXPECT_EQ(b.rope_theta, 10000.0);
  EXPECT_EQ(b.max_seq_len, 2048);
  EXPECT_TRUE(b.pre_norm);
  EXPECT_FALSE(b.window_size);
  EXPECT_FALSE(b.kv_lora_rank);
  EXPECT_FALSE(b.q_lora_rank);
  EXPECT_FALSE(b.rope_dim);
  EXPECT_FALSE(b.n_experts);
  EXPECT_EQ(b.top_k_experts, 2);
  EXPECT_FALSE(b.n_shared_experts);
  EXPECT_EQ(b.conv_kernel_size, 4);
  EXPECT_FALSE(b.use_short_conv);
  EXPECT_FALSE(b.mamba_n_heads);
  EXPECT_FALSE(b.mamba_head_dim);
  EXPECT_EQ(b.ssm_state_size, 128);
  EXPECT_EQ(b.mamba_expand, 2);
  EXPECT_EQ(b.mamba_n_groups, 1);
  EXPECT_EQ(b.mamba_chunk_size, 128);
  EXPECT_FALSE(b.mamba_bc_norm);
  EXPECT_FALSE(b.mamba_trapezoidal);
  EXPECT_FALSE(b.mamba_complex_a);
  EXPECT_FALSE(b.moe_latent_size);
  EXPECT_FALSE(b.moe_d_ff);
  EXPECT_FALSE(b.shared_expert_d_ff);
  EXPECT_EQ(b.moe_routed_scaling_factor, 1.0);
  EXPECT_EQ(b.moe_n_groups, 1);
  EXPECT_EQ(b.moe_topk_groups, 1);
  EXPECT_FALSE(b.qk_norm);
  EXPECT_FALSE(b.attention_chunk_size);
  EXPECT_FALSE(b.mup);
  EXPECT_FALSE(b.sparse_compress_ratio);
  EXPECT_FALSE(b.sparse_select_k);
  // Blocklab's MoE extras (lmxlab has none).
  EXPECT_EQ(b.moe_aux_loss_coef, 0.01);
  EXPECT_EQ(b.moe_z_loss_coef, 0.001);
  EXPECT_EQ(b.moe_bias_update_rate, 1e-3);
  EXPECT_FALSE(b.sinusoidal_vaswani);  // MLX's sinusoidal table, as lmxlab
  // Blocklab's layout options for imported models: all off.
  EXPECT_FALSE(b.head_dim_override);
  EXPECT_FALSE(b.qkv_bias);
  EXPECT_FALSE(b.ffn_activation);
  EXPECT_FALSE(b.norm_unit_offset);
  // 51 fields, all serialised except the 17 unset optionals.
  EXPECT_EQ(json(b).size(), 51u - 17u);
}

TEST(BlockConfig, Helpers) {
  BlockConfig b;
  EXPECT_EQ(b.effective_n_kv_heads(), 8);
  EXPECT_EQ(b.head_dim(), 64);
  b.n_kv_heads = 2;
  EXPECT_EQ(b.effective_n_kv_heads(), 2);
}

TEST(ModelConfig, DefaultsMatchLmxlab) {
  ModelConfig m;
  EXPECT_EQ(m.block, BlockConfig());
  EXPECT_EQ(m.vocab_size, 32000);
  EXPECT_EQ(m.n_layers, 6);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_TRUE(m.block_configs.empty());
  EXPECT_FALSE(m.mup_base_width);
  EXPECT_EQ(m.mtp_n_predict, 0);
  EXPECT_EQ(m.mtp_lambda, 0.1);
  EXPECT_EQ(m.name, "");
  EXPECT_EQ(m.init_std, 0.02);
  EXPECT_EQ(m.hybrid_pattern, "");
  EXPECT_TRUE(validation_errors(m).empty()) << errors_of(m);
}

TEST(ModelConfig, GetBlockConfigAndWidthMult) {
  ModelConfig m = valid_config();
  EXPECT_EQ(m.get_block_config(1), m.block);
  m.block_configs = {m.block, m.block};
  m.block_configs[1].window_size = 16;
  EXPECT_EQ(m.get_block_config(1).window_size, 16);
  EXPECT_FALSE(m.get_block_config(0).window_size);
  EXPECT_THROW(m.get_block_config(2), std::out_of_range);
  // A hybrid pattern turns each layer into its kind on top of its config.
  m.hybrid_pattern = "*-";
  EXPECT_EQ(m.get_block_config(0).ffn, "none");
  EXPECT_EQ(m.get_block_config(0).attention, m.block.attention);
  EXPECT_EQ(m.get_block_config(0).window_size, std::nullopt);
  EXPECT_EQ(m.get_block_config(1).attention, "none");
  EXPECT_EQ(m.get_block_config(1).window_size, 16);  // the rest of the layer config stays
  EXPECT_EQ(apply_hybrid_kind(m.block, 'M').attention, "mamba2");
  EXPECT_EQ(apply_hybrid_kind(m.block, 'M').ffn, "none");
  EXPECT_EQ(apply_hybrid_kind(m.block, 'E').ffn, "moe");
  EXPECT_EQ(apply_hybrid_kind(m.block, 'E').attention, "none");
  BlockConfig mamba = m.block;
  mamba.attention = "mamba2";
  EXPECT_EQ(apply_hybrid_kind(mamba, '*').attention, "gqa");
  BlockConfig latent = m.block;
  latent.ffn = "latent_moe";
  EXPECT_EQ(apply_hybrid_kind(latent, 'E').ffn, "latent_moe");
  EXPECT_EQ(apply_hybrid_kind(latent, '-').ffn, "relu2");
  m.hybrid_pattern.clear();
  EXPECT_EQ(m.width_mult(), 1.0);
  m.mup_base_width = 16;
  EXPECT_EQ(m.width_mult(), 4.0);
}

// ---------------------------------------------------------------- JSON

TEST(ConfigJson, RoundTripDefaults) {
  ModelConfig m;
  EXPECT_EQ(model_config_from_json(model_config_to_json(m)), m);
  EXPECT_EQ(model_config_from_json(json::object()), m);
}

TEST(ConfigJson, RoundTripAllFieldsSet) {
  ModelConfig m = valid_config();
  m.name = "everything";
  BlockConfig& b = m.block;
  b.attention = "gqa";
  b.n_kv_heads = 2;
  b.window_size = 32;
  b.kv_lora_rank = 16;
  b.q_lora_rank = 24;
  b.rope_dim = 8;
  b.n_experts = 8;
  b.top_k_experts = 3;
  b.n_shared_experts = 1;
  b.mamba_n_heads = 4;
  b.mamba_head_dim = 32;
  b.moe_latent_size = 12;
  b.moe_d_ff = 48;
  b.shared_expert_d_ff = 96;
  b.moe_routed_scaling_factor = 2.5;
  b.attention_chunk_size = 64;
  b.sparse_compress_ratio = 4;
  b.sparse_select_k = 16;
  b.dropout = 0.1;
  b.norm_eps = 1e-6;
  b.rope_theta = 500000.0;
  b.mup = true;
  b.qk_norm = true;
  b.sinusoidal_vaswani = true;
  b.head_dim_override = 16;
  b.qkv_bias = true;
  b.ffn_activation = "gelu_tanh";
  b.norm_unit_offset = true;
  m.embed_scale = 8.0;
  m.mup_base_width = 32;
  m.mtp_n_predict = 2;
  m.mtp_lambda = 0.3;
  m.init_std = 0.01;
  m.hybrid_pattern = "M*";
  m.tie_embeddings = false;
  EXPECT_EQ(model_config_from_json(model_config_to_json(m)), m);
  EXPECT_EQ(json(m)["block"].size(), 51u);  // nothing unset
}

TEST(ConfigJson, OmitsNulls) {
  json j = model_config_to_json(ModelConfig());
  EXPECT_FALSE(j["block"].contains("n_kv_heads"));
  EXPECT_FALSE(j.contains("mup_base_width"));
  EXPECT_FALSE(j.contains("block_configs"));
  EXPECT_EQ(j.dump().find("null"), std::string::npos);
}

TEST(ConfigJson, BlockConfigsArePartialOverrides) {
  json j = {{"block", {{"d_model", 64}, {"n_heads", 4}, {"d_ff", 256}, {"position", "rope"}}},
            {"n_layers", 3},
            {"vocab_size", 65},
            {"block_configs",
             {json::object(),
              {{"attention", "gqa"}, {"n_kv_heads", 2}, {"window_size", 64}},
              {{"d_ff", 128}}}}};
  ModelConfig m = model_config_from_json(j);
  ASSERT_EQ(m.block_configs.size(), 3u);
  EXPECT_EQ(m.block_configs[0], m.block);
  EXPECT_EQ(m.block_configs[1].attention, "gqa");
  EXPECT_EQ(m.block_configs[1].window_size, 64);
  EXPECT_EQ(m.block_configs[1].position, "rope");  // inherited from block
  EXPECT_EQ(m.block_configs[1].d_model, 64);
  EXPECT_EQ(m.block_configs[2].d_ff, 128);
  EXPECT_EQ(m.block_configs[2].attention, "mha");
  EXPECT_TRUE(validation_errors(m).empty()) << errors_of(m);

  // Serialised entries hold only the differences, and round-trip.
  json out = model_config_to_json(m);
  EXPECT_EQ(out["block_configs"][0], json::object());
  EXPECT_EQ(out["block_configs"][1],
            (json{{"attention", "gqa"}, {"n_kv_heads", 2}, {"window_size", 64}}));
  EXPECT_EQ(out["block_configs"][2], (json{{"d_ff", 128}}));
  EXPECT_EQ(model_config_from_json(out), m);
}

TEST(ConfigJson, OverrideCanUnsetAnOptional) {
  ModelConfig m = valid_config();
  m.block.window_size = 16;
  m.block_configs = {m.block, m.block};
  m.block_configs[0].window_size.reset();  // global attention in layer 0
  json j = model_config_to_json(m);
  EXPECT_TRUE(j["block_configs"][0]["window_size"].is_null());
  EXPECT_EQ(model_config_from_json(j), m);
}

TEST(ConfigJson, NullBlockConfigsMeansNone) {
  ModelConfig m = model_config_from_json({{"block_configs", nullptr}, {"mup_base_width", nullptr}});
  EXPECT_TRUE(m.block_configs.empty());
  EXPECT_FALSE(m.mup_base_width);
}

TEST(ConfigJson, IntegralFloatsAcceptedForIntegers) {
  ModelConfig m = model_config_from_json({{"vocab_size", 1e3}});
  EXPECT_EQ(m.vocab_size, 1000);
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"vocab_size", 1.5}});
              }),
              HasSubstr("vocab_size: expected integer, got number 1.5"));
}

TEST(ConfigJson, SaveLoadFile) {
  ModelConfig m = valid_config();
  m.name = "file";
  m.block_configs = {m.block, m.block};
  m.block_configs[1].attention = "gqa";
  m.block_configs[1].n_kv_heads = 2;
  auto path = temp_file("model.json").string();
  save_model_config(path, m);
  EXPECT_EQ(load_model_config(path), m);
}

TEST(ConfigJson, SavedFileKeepsDeclarationOrder) {
  ModelConfig m = valid_config();
  m.name = "ordered";
  auto path = temp_file("ordered.json").string();
  save_model_config(path, m);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_LT(text.find("\"name\""), text.find("\"block\""));
  EXPECT_LT(text.find("\"attention\""), text.find("\"d_model\""));
  EXPECT_LT(text.find("\"d_model\""), text.find("\"bias\""));
  EXPECT_LT(text.find("\"block\""), text.find("\"vocab_size\""));
}

TEST(ConfigJson, FieldNameLists) {
  EXPECT_EQ(block_config_field_names().size(), 51u);
  ModelConfig m = valid_config();
  m.name = "x";
  m.mup_base_width = 8;
  m.hybrid_pattern = "**";
  m.embed_scale = 2.0;  // written only when not 1
  m.block_configs = {m.block, m.block};
  auto names = model_config_field_names();
  json j = m;
  EXPECT_EQ(j.size(), names.size());
  for (auto& [k, v] : j.items())
    EXPECT_NE(std::find(names.begin(), names.end(), k), names.end()) << k;
}

TEST(ConfigJson, AdlConversions) {
  ModelConfig m = valid_config();
  json j = m;
  EXPECT_EQ(j.get<ModelConfig>(), m);
  BlockConfig b;
  b.n_kv_heads = 4;
  EXPECT_EQ(json(b).get<BlockConfig>(), b);
}

// ---------------------------------------------------------------- JSON errors

TEST(ConfigJsonErrors, UnknownKeySuggestsClosest) {
  std::string e = error_of([] { model_config_from_json({{"vocab_sise", 10}}); });
  EXPECT_THAT(e, HasSubstr("unknown key 'vocab_sise'"));
  EXPECT_THAT(e, HasSubstr("did you mean 'vocab_size'?"));

  e = error_of([] { model_config_from_json({{"block", {{"d_modle", 64}}}}); });
  EXPECT_THAT(e, HasSubstr("block: unknown key 'd_modle'; did you mean 'd_model'?"));

  e = error_of([] { model_config_from_json({{"block_configs", {{{"windw_size", 4}}}}}); });
  EXPECT_THAT(e,
              HasSubstr("block_configs[0]: unknown key 'windw_size'; did you mean 'window_size'?"));
}

TEST(ConfigJsonErrors, HintsForFlatAndAbbreviatedKeys) {
  // Subsequence abbreviations.
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", {{"windw", 4}}}});
              }),
              HasSubstr("block: unknown key 'windw'; did you mean 'window_size'?"));
  // Block fields at the model's top level (flat configs).
  std::string e = error_of([] { model_config_from_json({{"d_model", 64}, {"seq_len", 128}}); });
  EXPECT_THAT(e, HasSubstr("unknown key 'd_model'; did you mean 'block.d_model'?"));
  EXPECT_THAT(e, HasSubstr("unknown key 'seq_len'; did you mean 'block.max_seq_len'?"));
}

TEST(ConfigJsonErrors, FlatPerfConfigAsPresetExplainsLayout) {
  auto flat = temp_file("flat.json");
  write_text(flat, R"({"vocab_size": 65, "d_model": 128, "n_kv_heads": 4, "seq_len": 128,
                       "lr": 1e-3, "steps": 300})");
  std::string e = error_of([&] { load_preset_file(flat.string()); });
  EXPECT_THAT(e, HasSubstr("unknown key 'vocab_size'; did you mean 'model.vocab_size'?"));
  EXPECT_THAT(e, HasSubstr("unknown key 'd_model'; did you mean 'model.block.d_model'?"));
  EXPECT_THAT(e, HasSubstr("unknown key 'n_kv_heads'; did you mean 'model.block.n_kv_heads'?"));
  EXPECT_THAT(e, HasSubstr("unknown key 'seq_len'; did you mean 'train.seq_len'?"));
  EXPECT_THAT(e, HasSubstr("unknown key 'lr'; did you mean 'train.learning_rate'?"));
  EXPECT_THAT(e, HasSubstr("unknown key 'steps'; did you mean 'train.max_steps'?"));
}

TEST(ConfigJsonErrors, UnknownKeyFarFromEverythingListsKnownKeys) {
  std::string e = error_of([] { model_config_from_json({{"zzzzzzzzzzzzzzzz", 1}}); });
  EXPECT_THAT(e, HasSubstr("unknown key 'zzzzzzzzzzzzzzzz'; known keys: name, block, vocab_size"));
}

TEST(ConfigJsonErrors, WrongTypesNameFieldAndExpectedType) {
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", {{"d_model", "big"}}}});
              }),
              HasSubstr("block.d_model: expected integer, got string \"big\""));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", {{"bias", 1}}}});
              }),
              HasSubstr("block.bias: expected boolean"));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", {{"attention", 3}}}});
              }),
              HasSubstr("block.attention: expected string, got number 3"));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", {{"dropout", "0.1"}}}});
              }),
              HasSubstr("block.dropout: expected number, got string"));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", {{"n_kv_heads", "2"}}}});
              }),
              HasSubstr("block.n_kv_heads: expected integer or null, got string \"2\""));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block", 5}});
              }),
              HasSubstr("block: expected a JSON object, got number 5"));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"block_configs", 5}});
              }),
              HasSubstr("block_configs: expected array"));
  EXPECT_THAT(error_of([] { model_config_from_json(json::array()); }),
              HasSubstr("expected a JSON object"));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"n_layers", -1.0e30}});
              }),
              HasSubstr("n_layers: expected integer"));
  EXPECT_THAT(error_of([] {
                model_config_from_json({{"n_layers", 18446744073709551615ull}});
              }),
              HasSubstr("n_layers: expected integer"));
}

TEST(ConfigJsonErrors, AllProblemsReportedAtOnce) {
  try {
    model_config_from_json({{"vocab", 1}, {"block", {{"d_model", "x"}, {"nheads", 2}}}});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.errors().size(), 3u) << e.what();
    std::string what = e.what();
    EXPECT_EQ(std::count(what.begin(), what.end(), '\n'), 2);
  }
}

TEST(ConfigJsonErrors, Files) {
  EXPECT_THAT(error_of([] { load_model_config("/nonexistent/dir/model.json"); }),
              HasSubstr("/nonexistent/dir/model.json: cannot open file"));

  auto bad = temp_file("bad_syntax.json");
  write_text(bad, "{\n  \"vocab_size\": 65,\n  \"n_layers\": \n}\n");
  std::string e = error_of([&] { load_model_config(bad.string()); });
  EXPECT_THAT(e, HasSubstr(bad.string() + ": invalid JSON: "));
  EXPECT_THAT(e, HasSubstr("line 4"));

  auto unknown = temp_file("unknown_key.json");
  write_text(unknown, R"({"vocab_size": 65, "n_layer": 4})");
  EXPECT_THAT(error_of([&] { load_model_config(unknown.string()); }),
              HasSubstr(unknown.string() + ": unknown key 'n_layer'; did you mean 'n_layers'?"));

  auto invalid = temp_file("invalid.json");
  write_text(invalid, R"({"block": {"d_model": 250}})");
  EXPECT_THAT(
      error_of([&] { load_model_config(invalid.string()); }),
      HasSubstr(invalid.string() + ": block.d_model (250) must be divisible by block.n_heads (8)"));

  EXPECT_THAT(error_of([] { save_model_config("/nonexistent/dir/out.json", ModelConfig()); }),
              HasSubstr("/nonexistent/dir/out.json: cannot open file for writing"));
}

// ---------------------------------------------------------------- validation

struct RuleCase {
  const char* what;
  std::function<void(ModelConfig&)> edit;
  const char* message;
};

TEST(ConfigValidation, EachRuleNamesTheField) {
  std::vector<RuleCase> cases = {
      {"divisible heads", [](ModelConfig& m) { m.block.d_model = 250, m.block.n_heads = 8; },
       "block.d_model (250) must be divisible by block.n_heads (8)"},
      {"kv heads",
       [](ModelConfig& m) {
         m.block.attention = "gqa", m.block.n_heads = 8, m.block.d_model = 64,
         m.block.n_kv_heads = 3;
       },
       "block.n_heads (8) must be divisible by block.n_kv_heads (3)"},
      {"mha kv heads", [](ModelConfig& m) { m.block.n_kv_heads = 2; },
       "block.n_kv_heads (2) must equal block.n_heads (4) for attention 'mha'"},
      {"n_kv_heads > 0", [](ModelConfig& m) { m.block.n_kv_heads = 0; },
       "block.n_kv_heads (0) must be > 0 when set"},
      {"block_configs length",
       [](ModelConfig& m) { m.n_layers = 4, m.block_configs.assign(3, m.block); },
       "block_configs has 3 entries but n_layers is 4"},
      {"unknown attention",
       [](ModelConfig& m) {
         m.block_configs.assign(3, m.block), m.n_layers = 3, m.block_configs[2].attention = "foo";
       },
       "block_configs[2].attention: unknown attention 'foo'; known: "},
      {"unknown ffn", [](ModelConfig& m) { m.block.ffn = "swiglu"; },
       "block.ffn: unknown ffn 'swiglu'; known: "},
      {"unknown norm", [](ModelConfig& m) { m.block.norm = "batch_norm"; },
       "block.norm: unknown norm 'batch_norm'"},
      {"unknown position", [](ModelConfig& m) { m.block.position = "xpos"; },
       "block.position: unknown position 'xpos'"},
      {"layer d_model",
       [](ModelConfig& m) { m.block_configs.assign(2, m.block), m.block_configs[1].d_model = 128; },
       "block_configs[1].d_model (128) must equal block.d_model (64)"},
      {"d_model", [](ModelConfig& m) { m.block.d_model = 0; }, "block.d_model (0) must be > 0"},
      {"n_heads", [](ModelConfig& m) { m.block.n_heads = -1; }, "block.n_heads (-1) must be > 0"},
      {"d_ff", [](ModelConfig& m) { m.block.d_ff = 0; }, "block.d_ff (0) must be > 0"},
      {"max_seq_len", [](ModelConfig& m) { m.block.max_seq_len = 0; },
       "block.max_seq_len (0) must be > 0"},
      {"vocab", [](ModelConfig& m) { m.vocab_size = 0; }, "vocab_size (0) must be > 0"},
      {"n_layers", [](ModelConfig& m) { m.n_layers = 0; }, "n_layers (0) must be > 0"},
      {"dropout high", [](ModelConfig& m) { m.block.dropout = 1.0; },
       "block.dropout (1) must be in [0, 1)"},
      {"dropout low", [](ModelConfig& m) { m.block.dropout = -0.1; },
       "block.dropout (-0.1) must be in [0, 1)"},
      {"norm_eps", [](ModelConfig& m) { m.block.norm_eps = 0; },
       "block.norm_eps (0) must be a finite number > 0"},
      {"rope_theta", [](ModelConfig& m) { m.block.rope_theta = -1; },
       "block.rope_theta (-1) must be a finite number > 0"},
      {"rope odd head dim",
       [](ModelConfig& m) { m.block.position = "rope", m.block.d_model = 60, m.block.n_heads = 4; },
       "block.position 'rope' needs an even head_dim, got d_model/n_heads = 15"},
      {"window_size", [](ModelConfig& m) { m.block.window_size = 0; },
       "block.window_size (0) must be >= 1 when set"},
      {"attention_chunk_size", [](ModelConfig& m) { m.block.attention_chunk_size = 0; },
       "block.attention_chunk_size (0) must be >= 1 when set"},
      {"sliding window needs window",
       [](ModelConfig& m) { m.block.attention = "sliding_window_gqa"; },
       "block.window_size must be set for attention 'sliding_window_gqa'"},
      {"kv_lora_rank", [](ModelConfig& m) { m.block.kv_lora_rank = 0; },
       "block.kv_lora_rank (0) must be > 0 when set"},
      {"q_lora_rank", [](ModelConfig& m) { m.block.q_lora_rank = -2; },
       "block.q_lora_rank (-2) must be > 0 when set"},
      {"rope_dim odd", [](ModelConfig& m) { m.block.rope_dim = 5; },
       "block.rope_dim (5) must be even"},
      {"mla needs rank", [](ModelConfig& m) { m.block.attention = "mla"; },
       "block.kv_lora_rank must be set for attention 'mla'"},
      {"mla rope_dim", [](ModelConfig& m) { m.block.attention = "mla", m.block.position = "rope"; },
       "block.rope_dim must be set for attention 'mla' with position 'rope'"},
      {"experts vs top k", [](ModelConfig& m) { m.block.n_experts = 1; },
       "block.n_experts (1) must be >= block.top_k_experts (2)"},
      {"n_experts", [](ModelConfig& m) { m.block.n_experts = 0; },
       "block.n_experts (0) must be > 0 when set"},
      {"top_k", [](ModelConfig& m) { m.block.top_k_experts = 0; },
       "block.top_k_experts (0) must be > 0"},
      {"shared experts", [](ModelConfig& m) { m.block.n_shared_experts = -1; },
       "block.n_shared_experts (-1) must be >= 0 when set"},
      {"moe_d_ff", [](ModelConfig& m) { m.block.moe_d_ff = 0; },
       "block.moe_d_ff (0) must be > 0 when set"},
      {"shared_expert_d_ff", [](ModelConfig& m) { m.block.shared_expert_d_ff = 0; },
       "block.shared_expert_d_ff (0) must be > 0 when set"},
      {"moe_latent_size", [](ModelConfig& m) { m.block.moe_latent_size = 0; },
       "block.moe_latent_size (0) must be > 0 when set"},
      {"moe scaling", [](ModelConfig& m) { m.block.moe_routed_scaling_factor = 0; },
       "block.moe_routed_scaling_factor (0) must be a finite number > 0"},
      {"moe groups", [](ModelConfig& m) { m.block.moe_topk_groups = 2; },
       "block.moe_topk_groups (2) must be <= block.moe_n_groups (1)"},
      {"moe n groups", [](ModelConfig& m) { m.block.moe_n_groups = 0; },
       "block.moe_n_groups (0) must be > 0"},
      {"experts per group", [](ModelConfig& m) { m.block.n_experts = 6, m.block.moe_n_groups = 4; },
       "block.n_experts (6) must be divisible by block.moe_n_groups (4)"},
      {"conv kernel", [](ModelConfig& m) { m.block.conv_kernel_size = 0; },
       "block.conv_kernel_size (0) must be > 0"},
      {"mamba heads", [](ModelConfig& m) { m.block.mamba_n_heads = 0; },
       "block.mamba_n_heads (0) must be > 0 when set"},
      {"mamba head dim", [](ModelConfig& m) { m.block.mamba_head_dim = -1; },
       "block.mamba_head_dim (-1) must be > 0 when set"},
      {"ssm state", [](ModelConfig& m) { m.block.ssm_state_size = 0; },
       "block.ssm_state_size (0) must be > 0"},
      {"mamba expand", [](ModelConfig& m) { m.block.mamba_expand = 0; },
       "block.mamba_expand (0) must be > 0"},
      {"mamba groups", [](ModelConfig& m) { m.block.mamba_n_groups = 0; },
       "block.mamba_n_groups (0) must be > 0"},
      {"mamba chunk", [](ModelConfig& m) { m.block.mamba_chunk_size = 0; },
       "block.mamba_chunk_size (0) must be > 0"},
      {"mamba inner width",
       [](ModelConfig& m) { m.block.attention = "mamba2", m.block.mamba_head_dim = 16; },
       "block: mamba heads (4) * mamba head dim (16) must equal block.mamba_expand * "
       "block.d_model (128)"},
      {"mamba heads per group",
       [](ModelConfig& m) {
         m.block.attention = "mamba2", m.block.mamba_head_dim = 32, m.block.mamba_n_groups = 3;
       },
       "block: mamba heads (4) must be divisible by block.mamba_n_groups (3)"},
      {"sparse ratio", [](ModelConfig& m) { m.block.sparse_compress_ratio = 0; },
       "block.sparse_compress_ratio (0) must be > 0 when set"},
      {"sparse k", [](ModelConfig& m) { m.block.sparse_select_k = 0; },
       "block.sparse_select_k (0) must be > 0 when set"},
      {"mup base", [](ModelConfig& m) { m.mup_base_width = 0; },
       "mup_base_width (0) must be > 0 when set"},
      {"mtp n", [](ModelConfig& m) { m.mtp_n_predict = -1; }, "mtp_n_predict (-1) must be >= 0"},
      {"mtp lambda", [](ModelConfig& m) { m.mtp_lambda = -0.5; },
       "mtp_lambda (-0.5) must be a finite number >= 0"},
      {"init_std", [](ModelConfig& m) { m.init_std = 0; },
       "init_std (0) must be a finite number > 0"},
      {"hybrid chars", [](ModelConfig& m) { m.hybrid_pattern = "MX"; },
       "hybrid_pattern[1]: invalid character 'X'; allowed: M (Mamba), E (MoE), * (attention), - "
       "(MLP)"},
      {"hybrid length", [](ModelConfig& m) { m.hybrid_pattern = "M*E"; },
       "hybrid_pattern has 3 characters but n_layers is 2"},
  };
  for (auto& c : cases) {
    ModelConfig m = valid_config();
    ASSERT_TRUE(validation_errors(m).empty()) << errors_of(m);
    c.edit(m);
    EXPECT_THAT(errors_of(m), HasSubstr(c.message)) << c.what;
    EXPECT_THROW(validate(m), ConfigError) << c.what;
  }
}

TEST(ConfigValidation, ValidVariantsPass) {
  ModelConfig m = valid_config();
  m.block.attention = "gqa";
  m.block.n_kv_heads = 1;  // MQA
  m.block.norm = "rms_norm";
  m.block.ffn = "gated";
  m.block.position = "rope";
  m.block.bias = false;
  m.hybrid_pattern = "*-";
  m.mup_base_width = 32;
  EXPECT_TRUE(validation_errors(m).empty()) << errors_of(m);
  for (const char* pos : {"sinusoidal", "learned", "rope", "alibi", "none"}) {
    m.block.position = pos;
    EXPECT_TRUE(validation_errors(m).empty()) << pos << ": " << errors_of(m);
  }
  // mha with n_kv_heads == n_heads is fine (the perf configs spell it out).
  ModelConfig mha = valid_config();
  mha.block.n_kv_heads = 4;
  EXPECT_TRUE(validation_errors(mha).empty()) << errors_of(mha);
}

TEST(ConfigValidation, CollectsAllErrorsOneLineEach) {
  ModelConfig m = valid_config();
  m.vocab_size = 0;
  m.block.d_model = 250;
  m.block.n_heads = 8;
  m.block.dropout = 2;
  auto errors = validation_errors(m);
  EXPECT_EQ(errors.size(), 3u) << errors_of(m);
  try {
    validate(m);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.errors(), errors);
    std::string expected;
    for (size_t i = 0; i < errors.size(); ++i) expected += (i ? "\n" : "") + errors[i];
    EXPECT_EQ(std::string(e.what()), expected);
    const std::invalid_argument& base = e;  // catchable as std::invalid_argument
    (void)base;
  }
}

TEST(ConfigValidation, BareBlockPaths) {
  BlockConfig b;
  b.d_model = 250;
  EXPECT_THAT(error_of([&] { validate(b); }),
              HasSubstr("d_model (250) must be divisible by n_heads (8)"));
  EXPECT_THAT(error_of([&] { validate(b); }), Not(HasSubstr("block.")));
}

// ---------------------------------------------------------------- presets

TEST(Presets, NamesAndAllValidate) {
  auto names = preset_names();
  for (const char* ref : {"gpt-small", "gpt-tiny", "llama-small", "llama-tiny"})  // torch_ref twins
    EXPECT_NE(std::find(names.begin(), names.end(), ref), names.end()) << ref;
  for (auto& n : names) {
    Preset p = load_preset(n);
    EXPECT_EQ(p.model.name, n);
    EXPECT_TRUE(validation_errors(p).empty()) << n;
    EXPECT_FALSE(p.description.empty()) << n;
    // Round trip through JSON.
    EXPECT_EQ(preset_from_json(preset_to_json(p)), p) << n;
  }
}

// The common recipe of ../shared/perf/torch_ref.py.
void expect_reference_recipe(const Preset& p) {
  const ModelConfig& m = p.model;
  const TrainConfig& t = p.train;
  EXPECT_EQ(m.vocab_size, 65);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_TRUE(m.block_configs.empty());
  EXPECT_EQ(m.init_std, 0.02);
  EXPECT_EQ(m.block.dropout, 0.0);
  EXPECT_EQ(m.block.norm_eps, 1e-5);
  EXPECT_EQ(m.block.rope_theta, 10000.0);
  EXPECT_TRUE(m.block.pre_norm);
  EXPECT_EQ(m.block.max_seq_len, t.seq_len);
  EXPECT_EQ(t.learning_rate, 1e-3);
  EXPECT_EQ(t.warmup_steps, 20);
  EXPECT_EQ(t.weight_decay, 0.1);
  EXPECT_EQ(t.min_lr_ratio, 0.1);
  EXPECT_EQ(t.max_grad_norm, 1.0);
  EXPECT_EQ(t.seed, 1337);
  EXPECT_EQ(t.optimizer, "adamw");
  EXPECT_EQ(t.lr_schedule, "cosine");
  EXPECT_EQ(t.beta1, 0.9);
  EXPECT_EQ(t.beta2, 0.95);
  EXPECT_EQ(t.eps, 1e-8);
  EXPECT_EQ(t.grad_accumulation_steps, 1);
  EXPECT_EQ(t.eval_batches, 20);
  EXPECT_EQ(t.val_fraction, 0.1);
}

void expect_gpt(const BlockConfig& b) {
  EXPECT_EQ(b.attention, "mha");
  EXPECT_EQ(b.ffn, "standard");
  EXPECT_EQ(b.norm, "layer_norm");
  EXPECT_EQ(b.position, "learned");
  EXPECT_TRUE(b.bias);
}

void expect_llama(const BlockConfig& b) {
  EXPECT_EQ(b.attention, "gqa");
  EXPECT_EQ(b.ffn, "gated");
  EXPECT_EQ(b.norm, "rms_norm");
  EXPECT_EQ(b.position, "rope");
  EXPECT_FALSE(b.bias);
}

TEST(Presets, GptTinyMatchesPerfTiny) {
  Preset p = load_preset("gpt-tiny");
  expect_reference_recipe(p);
  expect_gpt(p.model.block);
  EXPECT_EQ(p.model.block.d_model, 128);
  EXPECT_EQ(p.model.n_layers, 4);
  EXPECT_EQ(p.model.block.n_heads, 4);
  EXPECT_EQ(p.model.block.effective_n_kv_heads(), 4);
  EXPECT_EQ(p.model.block.d_ff, 512);
  EXPECT_EQ(p.train.seq_len, 128);
  EXPECT_EQ(p.train.batch_size, 32);
  EXPECT_EQ(p.train.max_steps, 300);
}

TEST(Presets, GptSmallMatchesPerfSmall) {
  Preset p = load_preset("gpt-small");
  expect_reference_recipe(p);
  expect_gpt(p.model.block);
  EXPECT_EQ(p.model.block.d_model, 256);
  EXPECT_EQ(p.model.n_layers, 6);
  EXPECT_EQ(p.model.block.n_heads, 8);
  EXPECT_EQ(p.model.block.effective_n_kv_heads(), 8);
  EXPECT_EQ(p.model.block.d_ff, 1024);
  EXPECT_EQ(p.train.seq_len, 256);
  EXPECT_EQ(p.train.batch_size, 16);
  EXPECT_EQ(p.train.max_steps, 100);
}

TEST(Presets, LlamaSmallMatchesPerfLlamaSmall) {
  Preset p = load_preset("llama-small");
  expect_reference_recipe(p);
  expect_llama(p.model.block);
  EXPECT_EQ(p.model.block.d_model, 256);
  EXPECT_EQ(p.model.n_layers, 6);
  EXPECT_EQ(p.model.block.n_heads, 8);
  EXPECT_EQ(p.model.block.n_kv_heads, 2);
  EXPECT_EQ(p.model.block.d_ff, 683);
  EXPECT_EQ(p.train.seq_len, 256);
  EXPECT_EQ(p.train.batch_size, 16);
  EXPECT_EQ(p.train.max_steps, 100);
}

TEST(Presets, LlamaTiny) {
  Preset p = load_preset("llama-tiny");
  expect_reference_recipe(p);
  expect_llama(p.model.block);
  EXPECT_EQ(p.model.block.d_model, 128);
  EXPECT_EQ(p.model.n_layers, 4);
  EXPECT_EQ(p.model.block.n_heads, 4);
  EXPECT_EQ(p.model.block.n_kv_heads, 2);
  EXPECT_EQ(p.model.block.d_ff, 344);
  EXPECT_EQ(p.train.seq_len, 128);
  EXPECT_EQ(p.train.batch_size, 32);
  EXPECT_EQ(p.train.max_steps, 300);
}

// Cross-checks every preset that mirrors a perf config against that JSON file
// itself (copies of ../shared/perf/configs, kept in tests/data).
TEST(Presets, MatchSharedPerfConfigFiles) {
  const std::pair<const char*, const char*> pairs[] = {
      {"gpt-tiny", "tiny.json"}, {"gpt-small", "small.json"}, {"llama-small", "llama_small.json"}};
  const fs::path dir = fs::path(BLOCKLAB_SOURCE_DIR) / "tests/data/torch_ref_configs";
  for (auto& [name, file] : pairs) {
    json ref = read_json_file((dir / file).string());
    Preset p = load_preset(name);
    const BlockConfig& b = p.model.block;
    EXPECT_EQ(ref["vocab_size"], p.model.vocab_size) << name;
    EXPECT_EQ(ref["d_model"], b.d_model) << name;
    EXPECT_EQ(ref["n_layers"], p.model.n_layers) << name;
    EXPECT_EQ(ref["n_heads"], b.n_heads) << name;
    EXPECT_EQ(ref["n_kv_heads"], b.effective_n_kv_heads()) << name;
    EXPECT_EQ(ref["d_ff"], b.d_ff) << name;
    EXPECT_EQ(ref["seq_len"], p.train.seq_len) << name;
    EXPECT_EQ(ref["batch_size"], p.train.batch_size) << name;
    EXPECT_EQ(ref["norm"], b.norm) << name;
    EXPECT_EQ(ref["ffn"], b.ffn) << name;
    EXPECT_EQ(ref["position"], b.position) << name;
    EXPECT_EQ(ref["bias"], b.bias) << name;
    EXPECT_EQ(ref["tie_embeddings"], p.model.tie_embeddings) << name;
    EXPECT_EQ(ref["lr"], p.train.learning_rate) << name;
    EXPECT_EQ(ref["warmup_steps"], p.train.warmup_steps) << name;
    EXPECT_EQ(ref["steps"], p.train.max_steps) << name;
    EXPECT_EQ(ref["seed"], p.train.seed) << name;
  }
}

TEST(Presets, UnknownNameListsKnown) {
  EXPECT_THAT(error_of([] { load_preset("gpt-huge"); }),
              HasSubstr("unknown preset 'gpt-huge'; known: deepseek-v2-tiny, "));
  EXPECT_THAT(error_of([] { load_preset("gpt-huge"); }),
              HasSubstr(", gpt-small, gpt-tiny, jamba-tiny, llama-small, llama-tiny, "));
}

TEST(Presets, ResourceDirEnvOverride) {
  fs::path dir = fs::temp_directory_path() / "blocklab_config_test_res";
  fs::remove_all(dir);
  fs::create_directories(dir / "presets");
  Preset p = load_preset("gpt-tiny");
  p.model.name = "mine";
  p.train.max_steps = 70;
  write_json_file((dir / "presets" / "mine.json").string(), preset_to_json(p));
  setenv("BLOCKLAB_RESOURCES", dir.c_str(), 1);
  EXPECT_EQ(resource_dir(), dir.string());
  EXPECT_EQ(preset_names(), std::vector<std::string>{"mine"});
  EXPECT_EQ(load_preset("mine"), p);
  EXPECT_THAT(error_of([] { load_preset("gpt-tiny"); }), HasSubstr("known: mine"));
  unsetenv("BLOCKLAB_RESOURCES");
  EXPECT_EQ(resource_dir(), std::string(BLOCKLAB_SOURCE_DIR) + "/resources");
}

TEST(Presets, FileErrors) {
  EXPECT_THAT(error_of([] { load_preset_file("/nonexistent/p.json"); }),
              HasSubstr("/nonexistent/p.json: cannot open file"));

  auto bad = temp_file("preset_bad.json");
  write_text(bad, "{\"model\": {\"vocab_size\": 65,}}");
  EXPECT_THAT(error_of([&] { load_preset_file(bad.string()); }),
              HasSubstr(bad.string() + ": invalid JSON: parse error at line 1"));

  auto keys = temp_file("preset_keys.json");
  write_text(keys,
             R"({"model": {"block": {"n_head": 4}}, "train": {"learning_rat": 1}, "modle": {}})");
  std::string e = error_of([&] { load_preset_file(keys.string()); });
  EXPECT_THAT(
      e, HasSubstr(keys.string() + ": model.block: unknown key 'n_head'; did you mean 'n_heads'?"));
  EXPECT_THAT(e, HasSubstr(keys.string() +
                           ": train: unknown key 'learning_rat'; did you mean 'learning_rate'?"));
  EXPECT_THAT(e, HasSubstr(keys.string() + ": unknown key 'modle'; did you mean 'model'?"));

  auto types = temp_file("preset_types.json");
  write_text(types, R"({"model": {"n_layers": "four"}, "train": {"optimizer": 1}})");
  e = error_of([&] { load_preset_file(types.string()); });
  EXPECT_THAT(e, HasSubstr("model.n_layers: expected integer, got string \"four\""));
  EXPECT_THAT(e, HasSubstr("train.optimizer: expected string, got number 1"));

  auto rules = temp_file("preset_rules.json");
  write_text(rules, R"({"model": {"block": {"d_model": 250, "max_seq_len": 64}},
                        "train": {"optimizer": "adam", "seq_len": 128}})");
  e = error_of([&] { load_preset_file(rules.string()); });
  EXPECT_THAT(
      e, HasSubstr(rules.string() +
                   ": model.block.d_model (250) must be divisible by model.block.n_heads (8)"));
  EXPECT_THAT(e, HasSubstr(rules.string() + ": train.optimizer: unknown optimizer 'adam'; known: "
                                            "adafactor, adamw, lion, sgd"));
  EXPECT_THAT(e, HasSubstr("train.seq_len (128) must be <= model.block.max_seq_len (64)"));
}

}  // namespace
}  // namespace bl
