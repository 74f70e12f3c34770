// Hugging Face export / import (engine/interop): config mapping and refusals,
// hand-written HF folders (names and layouts written here, not by the
// exporter) against the same weights set directly in a Blocklab model, the
// export -> import round trip, bf16/f16 rounding, tokenizers and hostile files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/presets.h"
#include "data/bpe_tokenizer.h"
#include "data/tokenizer.h"
#include "interop/hf_config.h"
#include "interop/hf_folder.h"
#include "interop/hf_weights.h"
#include "io/float16.h"
#include "io/safetensors.h"
#include "temp_files.h"
#include "tensor/graph.h"
#include "tensor/rng.h"
#include "train/checkpoint.h"

namespace bl {
namespace {

using json = nlohmann::json;
using test::TempDir;

std::vector<float> logits(LanguageModel& m, const std::vector<int32_t>& ids) {
  NoGradGuard ng;
  Tensor y = m.forward(Tokens{ids.data(), Shape{1, int64_t(ids.size())}});
  std::vector<float> out(y.data(), y.data() + y.numel());
  current_graph().clear();
  return out;
}

std::vector<int32_t> some_ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t((i * 7 + 3 + i / 3) % vocab));
  return ids;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> random_values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = (float(s % 20001) / 10000.0f - 1.0f) * 0.2f;
  }
  return v;
}

Parameter& param(LanguageModel& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return *p;
  throw std::runtime_error("no parameter " + name);
}

void write_json(const std::string& path, const json& j) {
  std::ofstream(path) << j.dump(2);
}

// ---------------------------------------------------------------- rounding

TEST(HfInterop, Bf16AndF16RoundToNearestEven) {
  auto f = [](uint32_t bits) { return std::bit_cast<float>(bits); };
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(f(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(f(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(f(0x3f808001)), 0x3f81);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(std::nanf("")) & 0x7fc0, 0x7fc0);
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // tie past the largest half: infinity
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, even
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, odd up
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);             // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);             // tie to even zero
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -25)), 0x0002);             // 1.5 ulp -> 2
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400);          // rounds up into the normals
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(float_to_half(INFINITY), 0x7c00);
  EXPECT_EQ(float_to_half(-1e30f), 0xfc00);
}

// A file written in bf16 / f16 reads back within half an ulp of each value.
TEST(HfInterop, HalfWriterRoundTripsWithinHalfUlp) {
  TempDir dir;
  const std::vector<float> v = random_values(4096, 7);
  for (const char* dt : {"BF16", "F16"}) {
    write_safetensors(dir / "x.safetensors", {{"x", {4096}, v.data(), dt}});
    const SafetensorsFile f = read_safetensors(dir / "x.safetensors");
    const LoadedTensor& t = f.tensors.at("x");
    EXPECT_EQ(t.dtype, dt);
    for (size_t i = 0; i < v.size(); ++i) {
      const int bits = std::string(dt) == "BF16" ? 8 : 11;
      int e = 0;
      std::frexp(v[i], &e);
      const float half_ulp = std::ldexp(1.0f, std::max(e, -13) - bits - 1);
      ASSERT_LE(std::fabs(t.data[i] - v[i]), half_ulp) << dt << " " << v[i];
    }
  }
}

TEST(HfInterop, WriterRefusesOtherDtypes) {
  TempDir dir;
  const float x = 1.0f;
  EXPECT_THROW(write_safetensors(dir / "x.safetensors", {{"x", {1}, &x, "F64"}}),
               std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

// ---------------------------------------------------------------- config

json tiny_llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 32},
          {"intermediate_size", 48},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"hidden_act", "silu"},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},
          {"rope_scaling", nullptr},
          {"vocab_size", 50},
          {"tie_word_embeddings", false},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"torch_dtype", "float32"},
          {"transformers_version", "4.44.0"},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"initializer_range", 0.02},
          {"use_cache", true},
          {"pretraining_tp", 1},
          {"attention_dropout", 0.0}};
}

json tiny_gpt2_config() {
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"vocab_size", 40},
          {"n_positions", 32},
          {"n_ctx", 32},
          {"n_embd", 24},
          {"n_layer", 2},
          {"n_head", 3},
          {"n_inner", nullptr},
          {"activation_function", "gelu"},
          {"layer_norm_epsilon", 1e-5},
          {"resid_pdrop", 0.1},
          {"embd_pdrop", 0.1},
          {"attn_pdrop", 0.1},
          {"bos_token_id", 0},
          {"eos_token_id", 0},
          {"scale_attn_weights", true},
          {"summary_type", "cls_index"}};
}

// As the released Qwen2 / Qwen2.5 and Gemma configs spell them (sizes shrunk).
json tiny_qwen2_config() {
  return {{"architectures", {"Qwen2ForCausalLM"}},
          {"model_type", "qwen2"},
          {"hidden_size", 32},
          {"intermediate_size", 48},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"hidden_act", "silu"},
          {"max_position_embeddings", 64},
          {"max_window_layers", 2},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1000000.0},
          {"sliding_window", 64},
          {"use_sliding_window", false},
          {"tie_word_embeddings", true},
          {"vocab_size", 50},
          {"torch_dtype", "bfloat16"},
          {"transformers_version", "4.43.1"},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"initializer_range", 0.02},
          {"use_cache", true},
          {"attention_dropout", 0.0}};
}

json tiny_gemma_config() {
  return {{"architectures", {"GemmaForCausalLM"}},
          {"model_type", "gemma"},
          {"hidden_size", 32},
          {"intermediate_size", 48},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"head_dim", 24},
          {"hidden_act", "gelu"},
          {"hidden_activation", "gelu_pytorch_tanh"},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},
          {"rope_scaling", nullptr},
          {"attention_bias", false},
          {"vocab_size", 50},
          {"torch_dtype", "bfloat16"},
          {"transformers_version", "4.38.0.dev0"},
          {"bos_token_id", 2},
          {"eos_token_id", 1},
          {"pad_token_id", 0},
          {"initializer_range", 0.02},
          {"use_cache", true},
          {"attention_dropout", 0.0}};
}

TEST(HfInterop, Qwen2GemmaAndTanhGpt2ConfigsMap) {
  const HfModelConfig q = model_config_from_hf(tiny_qwen2_config(), "config.json");
  EXPECT_EQ(q.family, HfFamily::kQwen2);
  EXPECT_TRUE(q.model.block.qkv_bias);
  EXPECT_FALSE(q.model.block.bias);
  EXPECT_FALSE(q.model.block.qk_norm);
  EXPECT_TRUE(q.model.tie_embeddings);
  EXPECT_DOUBLE_EQ(q.model.block.rope_theta, 1e6);

  const HfModelConfig g = model_config_from_hf(tiny_gemma_config(), "config.json");
  EXPECT_EQ(g.family, HfFamily::kGemma);
  const BlockConfig& b = g.model.block;
  EXPECT_EQ(b.head_dim(), 24);  // 2 heads of 24 in a width of 32
  EXPECT_EQ(b.ffn, "gated");
  EXPECT_EQ(b.ffn_activation, "gelu_tanh");
  EXPECT_TRUE(b.norm_unit_offset);
  EXPECT_DOUBLE_EQ(g.model.embed_scale, std::sqrt(32.0));
  EXPECT_TRUE(g.model.tie_embeddings);  // Gemma always ties
  json no_head_dim = tiny_gemma_config();
  no_head_dim.erase("head_dim");
  EXPECT_EQ(model_config_from_hf(no_head_dim, "c").model.block.head_dim(), 256);  // its default

  json gpt2 = tiny_gpt2_config();
  gpt2.erase("activation_function");  // GPT-2's default: gelu_new, the tanh form
  EXPECT_EQ(model_config_from_hf(gpt2, "c").model.block.ffn_activation, "gelu_tanh");
  EXPECT_FALSE(model_config_from_hf(tiny_gpt2_config(), "c").model.block.ffn_activation);
  json q3 = tiny_llama_config();
  q3["model_type"] = "qwen3";
  q3["architectures"] = {"Qwen3ForCausalLM"};
  q3.erase("mlp_bias");
  q3["head_dim"] = 16;  // Qwen3-0.6B: 16 heads of 128 in a width of 1024
  const HfModelConfig q3m = model_config_from_hf(q3, "c");
  EXPECT_EQ(q3m.model.block.head_dim(), 16);
  EXPECT_TRUE(q3m.model.block.qk_norm);
}

TEST(HfInterop, LlamaConfigMapsEveryField) {
  const HfModelConfig c = model_config_from_hf(tiny_llama_config(), "config.json");
  EXPECT_EQ(c.family, HfFamily::kLlama);
  const BlockConfig& b = c.model.block;
  EXPECT_EQ(b.attention, "gqa");
  EXPECT_EQ(b.ffn, "gated");
  EXPECT_EQ(b.norm, "rms_norm");
  EXPECT_EQ(b.position, "rope");
  EXPECT_EQ(b.d_model, 32);
  EXPECT_EQ(b.d_ff, 48);
  EXPECT_EQ(b.n_heads, 4);
  EXPECT_EQ(b.effective_n_kv_heads(), 2);
  EXPECT_EQ(b.max_seq_len, 64);
  EXPECT_DOUBLE_EQ(b.norm_eps, 1e-6);
  EXPECT_FALSE(b.bias);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.model.vocab_size, 50);
  EXPECT_EQ(c.model.n_layers, 2);
}

TEST(HfInterop, Gpt2ConfigMapsEveryField) {
  const HfModelConfig c = model_config_from_hf(tiny_gpt2_config(), "config.json");
  EXPECT_EQ(c.family, HfFamily::kGpt2);
  const BlockConfig& b = c.model.block;
  EXPECT_EQ(b.attention, "mha");
  EXPECT_EQ(b.ffn, "standard");
  EXPECT_EQ(b.norm, "layer_norm");
  EXPECT_EQ(b.position, "learned");
  EXPECT_EQ(b.d_ff, 96);  // n_inner null = 4 * n_embd
  EXPECT_TRUE(b.bias);
  EXPECT_TRUE(c.model.tie_embeddings);
  EXPECT_EQ(b.max_seq_len, 32);
}

std::string refusal(json j) {
  try {
    model_config_from_hf(j, "cfg.json");
  } catch (const HfError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(HfInterop, RefusalsNameTheFieldOrFamily) {
  auto with = [](json j, const std::string& k, json v) {
    j[k] = v;
    return j;
  };
  const json l = tiny_llama_config(), g = tiny_gpt2_config();
  EXPECT_NE(refusal(with(l, "rope_scaling", {{"type", "linear"}, {"factor", 2.0}}))
                .find("'rope_scaling'"),
            std::string::npos);
  EXPECT_NE(refusal(with(l, "hidden_act", "gelu")).find("'hidden_act'"), std::string::npos);
  EXPECT_NE(refusal(with(l, "head_dim", "16")).find("'head_dim'"), std::string::npos);
  EXPECT_NE(refusal(with(l, "head_dim", 0)).find("'head_dim'"), std::string::npos);
  EXPECT_NE(refusal(with(l, "head_dim", 7)).find("even head_dim"), std::string::npos);
  EXPECT_EQ(refusal(with(l, "head_dim", 16)), "(accepted)");  // Qwen3-style wider heads
  EXPECT_EQ(refusal(with(l, "head_dim", 8)), "(accepted)");
  EXPECT_EQ(refusal(with(l, "rope_interleaved", false)), "(accepted)");  // transformers ignores it
  EXPECT_NE(refusal(with(l, "mlp_bias", true)).find("'mlp_bias'"), std::string::npos);
  EXPECT_NE(refusal(with(l, "some_new_knob", 3)).find("'some_new_knob'"), std::string::npos);
  EXPECT_NE(refusal(with(l, "hidden_size", "32")).find("'hidden_size'"), std::string::npos);
  EXPECT_NE(
      refusal(with(l, "architectures", {"LlamaForSequenceClassification"})).find("'architectures'"),
      std::string::npos);
  EXPECT_NE(refusal(with(l, "num_key_value_heads", 3)).find("n_kv_heads"), std::string::npos);
  json no_layers = l;
  no_layers.erase("num_hidden_layers");
  EXPECT_NE(refusal(no_layers).find("'num_hidden_layers' is missing"), std::string::npos);
  EXPECT_NE(refusal(with(g, "activation_function", "relu")).find("'activation_function'"),
            std::string::npos);
  EXPECT_NE(refusal(with(l, "hidden_act", "gelu_fast")).find("'hidden_act'"), std::string::npos);
  EXPECT_NE(refusal(with(g, "scale_attn_by_inverse_layer_idx", true))
                .find("'scale_attn_by_inverse_layer_idx'"),
            std::string::npos);
  EXPECT_NE(refusal(with(with(l, "model_type", "gemma2"), "architectures", {"Gemma2ForCausalLM"}))
                .find("only Gemma 1"),
            std::string::npos);
  EXPECT_NE(refusal(with(tiny_gemma_config(), "attention_bias", true)).find("'attention_bias'"),
            std::string::npos);
  EXPECT_NE(
      refusal(with(tiny_gemma_config(), "hidden_activation", "relu")).find("'hidden_activation'"),
      std::string::npos);
  EXPECT_NE(
      refusal(with(tiny_qwen2_config(), "use_sliding_window", true)).find("'use_sliding_window'"),
      std::string::npos);
  EXPECT_NE(refusal(with(l, "model_type", "falcon")).find("'falcon' is not supported"),
            std::string::npos);
  json q = l;
  q["model_type"] = "qwen3";
  q["architectures"] = {"Qwen3ForCausalLM"};
  q.erase("mlp_bias");
  EXPECT_EQ(refusal(q), "(accepted)");
  EXPECT_NE(refusal(with(q, "use_sliding_window", true)).find("'use_sliding_window'"),
            std::string::npos);
  json x = l;
  x["model_type"] = "mixtral";
  x["architectures"] = {"MixtralForCausalLM"};
  x.erase("mlp_bias");
  x.erase("attention_bias");
  x["num_local_experts"] = 4;
  x["num_experts_per_tok"] = 1;
  EXPECT_NE(refusal(x).find("'num_experts_per_tok'"), std::string::npos);
}

// Every field of both configs set to values of every wrong kind: an HfError
// or an accepted config, never another exception or a crash.
TEST(HfInterop, EveryFieldWithWrongValuesIsRefusedCleanly) {
  const json bad_values[] = {
      "x", -1, 0, 1e300, nullptr, json::object(), json::array(), true, int64_t(1) << 62};
  for (const json& base :
       {tiny_llama_config(), tiny_gpt2_config(), tiny_qwen2_config(), tiny_gemma_config()})
    for (auto it = base.begin(); it != base.end(); ++it)
      for (const json& v : bad_values) {
        json j = base;
        j[it.key()] = v;
        try {
          model_config_from_hf(j, "cfg.json");
        } catch (const HfError&) {
        } catch (const std::exception& e) {
          ADD_FAILURE() << it.key() << " = " << v.dump() << ": " << e.what();
        }
      }
}

ModelConfig preset_model(const std::string& name) {
  ModelConfig m = load_preset(name).model;
  m.vocab_size = 256;  // the byte tokenizer's
  m.n_layers = 2;
  return m;
}

std::string export_refusal(ModelConfig m) {
  try {
    hf_config_from_model(m, "float32");
  } catch (const HfError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(HfInterop, ExportRefusesWhatNoFamilyComputes) {
  EXPECT_EQ(export_refusal(preset_model("llama-tiny")), "(accepted)");
  EXPECT_EQ(export_refusal(preset_model("gpt-tiny")), "(accepted)");
  EXPECT_EQ(export_refusal(preset_model("mistral-tiny")), "(accepted)");
  EXPECT_EQ(export_refusal(preset_model("mixtral-tiny")), "(accepted)");
  ModelConfig m = preset_model("gpt-tiny");
  m.block.position = "alibi";
  EXPECT_NE(export_refusal(m).find("position 'alibi'"), std::string::npos);
  m = preset_model("gpt-tiny");
  m.tie_embeddings = false;
  EXPECT_NE(export_refusal(m).find("tie_word_embeddings"), std::string::npos) << export_refusal(m);
  m = preset_model("gpt-tiny");
  m.block.bias = false;
  EXPECT_NE(export_refusal(m).find("model.block.bias"), std::string::npos) << export_refusal(m);
  m = preset_model("llama-tiny");
  m.block.pre_norm = false;
  EXPECT_NE(export_refusal(m).find("pre_norm"), std::string::npos);
  m = preset_model("llama-tiny");
  m.block.qk_norm = true;
  m.block.bias = true;  // Qwen3's MLP has no bias
  EXPECT_NE(export_refusal(m).find("attention_bias"), std::string::npos) << export_refusal(m);
  m = preset_model("mixtral-tiny");
  m.block.top_k_experts = 1;
  EXPECT_NE(export_refusal(m).find("num_experts_per_tok"), std::string::npos);
  EXPECT_NE(export_refusal(preset_model("gemma3-tiny")).find("cannot export"), std::string::npos);
  m = preset_model("llama-tiny");
  m.block.norm_unit_offset = true;  // Gemma's norm without Gemma's embedding scale and GeGLU
  EXPECT_NE(export_refusal(m).find("embed_scale"), std::string::npos) << export_refusal(m);
  m.embed_scale = std::sqrt(double(m.block.d_model));
  EXPECT_EQ(export_refusal(m), "(accepted)");  // GemmaMLP takes any hidden_activation, silu too
  m.block.ffn_activation = "gelu_tanh";
  EXPECT_EQ(export_refusal(m), "(accepted)");
  m.embed_scale = 2.0;
  EXPECT_NE(export_refusal(m).find("embed_scale"), std::string::npos) << export_refusal(m);
}

// ---------------------------------------------------------------- hand-written folders

// The tensors of a LLaMA model written with HF names by this test, and the
// same values set directly on a Blocklab model.
TEST(HfInterop, HandWrittenLlamaFolderMatchesDirectWeights) {
  TempDir dir;
  const json cfg = tiny_llama_config();
  write_json(dir / "config.json", cfg);
  const int64_t D = 32, F = 48, V = 50, H = 4, KV = 2, hd = 8;
  std::map<std::string, std::pair<std::vector<int64_t>, std::string>> hf = {
      {"model.embed_tokens.weight", {{V, D}, "embed_tokens.weight"}},
      {"model.norm.weight", {{D}, "norm.weight"}},
      {"lm_head.weight", {{V, D}, "lm_head.weight"}}};
  for (int l = 0; l < 2; ++l) {
    const std::string h = "model.layers." + std::to_string(l) + ".",
                      b = "layers." + std::to_string(l) + ".";
    hf[h + "input_layernorm.weight"] = {{D}, b + "attn_norm.weight"};
    hf[h + "post_attention_layernorm.weight"] = {{D}, b + "ffn_norm.weight"};
    hf[h + "self_attn.q_proj.weight"] = {{H * hd, D}, b + "attention.q_proj.weight"};
    hf[h + "self_attn.k_proj.weight"] = {{KV * hd, D}, b + "attention.k_proj.weight"};
    hf[h + "self_attn.v_proj.weight"] = {{KV * hd, D}, b + "attention.v_proj.weight"};
    hf[h + "self_attn.o_proj.weight"] = {{D, H * hd}, b + "attention.o_proj.weight"};
    hf[h + "mlp.gate_proj.weight"] = {{F, D}, b + "ffn.gate_proj.weight"};
    hf[h + "mlp.up_proj.weight"] = {{F, D}, b + "ffn.up_proj.weight"};
    hf[h + "mlp.down_proj.weight"] = {{D, F}, b + "ffn.down_proj.weight"};
  }
  ModelConfig mc;
  mc.vocab_size = V;
  mc.n_layers = 2;
  mc.tie_embeddings = false;
  mc.block.attention = "gqa";
  mc.block.ffn = "gated";
  mc.block.norm = "rms_norm";
  mc.block.position = "rope";
  mc.block.bias = false;
  mc.block.d_model = D;
  mc.block.d_ff = F;
  mc.block.n_heads = H;
  mc.block.n_kv_heads = KV;
  mc.block.max_seq_len = 64;
  mc.block.norm_eps = 1e-6;
  LanguageModel direct(mc);
  std::vector<std::vector<float>> keep;
  std::vector<TensorView> views;
  uint64_t seed = 1;
  for (auto& [name, sb] : hf) {
    int64_t n = 1;
    for (int64_t d : sb.first) n *= d;
    keep.push_back(random_values(n, seed++));
    if (name.find("norm") != std::string::npos)
      for (float& x : keep.back()) x += 1.0f;
    views.push_back({name, sb.first, keep.back().data()});
    Parameter& p = param(direct, sb.second);
    ASSERT_EQ(p.shape().numel(), n) << name;
    std::memcpy(p.data(), keep.back().data(), size_t(n) * sizeof(float));
  }
  // A real Llama checkpoint may also carry the rotary buffer: skipped.
  const std::vector<float> inv(4, 1.0f);
  views.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {4}, inv.data()});
  write_safetensors(dir / "model.safetensors", views);
  HfImport in = read_hf_folder(dir.path());
  EXPECT_EQ(in.family, HfFamily::kLlama);
  EXPECT_EQ(in.tokenizer, nullptr);
  const std::vector<int32_t> ids = some_ids(20, V);
  const std::vector<float> a = logits(*in.model, ids), b = logits(direct, ids);
  EXPECT_TRUE(bit_equal(a, b));
  // The hand-written tensors and the exporter agree name by name and value by value.
  for (const HfTensor& t : hf_tensors_from_model(direct, HfFamily::kLlama)) {
    bool found = false;
    for (size_t i = 0; i < views.size(); ++i)
      if (views[i].name == t.name) {
        found = true;
        EXPECT_EQ(views[i].shape, t.shape) << t.name;
        EXPECT_EQ(0, std::memcmp(views[i].data, t.data.data(), t.data.size() * 4)) << t.name;
      }
    EXPECT_TRUE(found) << t.name;
  }
}

// GPT-2: Conv1D weights [in, out] and the fused c_attn, laid out by hand here.
TEST(HfInterop, HandWrittenGpt2FolderMatchesDirectWeights) {
  TempDir dir;
  json cfg = tiny_gpt2_config();
  write_json(dir / "config.json", cfg);
  const int64_t D = 24, F = 96, V = 40, P = 32;
  ModelConfig mc;
  mc.vocab_size = V;
  mc.n_layers = 2;
  mc.tie_embeddings = true;
  mc.block.attention = "mha";
  mc.block.ffn = "standard";
  mc.block.norm = "layer_norm";
  mc.block.position = "learned";
  mc.block.bias = true;
  mc.block.d_model = D;
  mc.block.d_ff = F;
  mc.block.n_heads = 3;
  mc.block.max_seq_len = P;
  LanguageModel direct(mc);
  Rng rng(5);
  direct.init_weights(rng);
  for (auto& [n, p] : direct.named_parameters())  // non-trivial biases and norms too
    if (n.find("bias") != std::string::npos || n.find("norm") != std::string::npos) {
      const std::vector<float> r = random_values(p->shape().numel(), std::hash<std::string>()(n));
      for (int64_t i = 0; i < p->shape().numel(); ++i) p->data()[i] += r[size_t(i)];
    }
  std::vector<std::vector<float>> keep;
  std::vector<TensorView> views;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, std::vector<float> v) {
    keep.push_back(std::move(v));
    views.push_back({name, shape, keep.back().data()});
  };
  auto get = [&](const std::string& n) {
    Parameter& p = param(direct, n);
    return std::vector<float>(p.data(), p.data() + p.shape().numel());
  };
  auto transpose = [](const std::vector<float>& w, int64_t rows, int64_t cols) {
    std::vector<float> t(w.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) t[size_t(c * rows + r)] = w[size_t(r * cols + c)];
    return t;
  };
  // GPT2Model-style names (no "transformer." prefix), as the original gpt2 files have.
  add("wte.weight", {V, D}, get("embed_tokens.weight"));
  add("wpe.weight", {P, D}, get("position.weight"));
  add("ln_f.weight", {D}, get("norm.weight"));
  add("ln_f.bias", {D}, get("norm.bias"));
  for (int l = 0; l < 2; ++l) {
    const std::string h = "h." + std::to_string(l) + ".", b = "layers." + std::to_string(l) + ".";
    add(h + "ln_1.weight", {D}, get(b + "attn_norm.weight"));
    add(h + "ln_1.bias", {D}, get(b + "attn_norm.bias"));
    add(h + "ln_2.weight", {D}, get(b + "ffn_norm.weight"));
    add(h + "ln_2.bias", {D}, get(b + "ffn_norm.bias"));
    std::vector<float> w(size_t(D * 3 * D)), bias;
    const char* qkv[] = {"q", "k", "v"};
    for (int k = 0; k < 3; ++k) {
      const std::vector<float> wk = get(b + "attention." + qkv[k] + "_proj.weight");  // (out, in)
      for (int64_t o = 0; o < D; ++o)
        for (int64_t i = 0; i < D; ++i) w[size_t(i * 3 * D + k * D + o)] = wk[size_t(o * D + i)];
      const std::vector<float> bk = get(b + "attention." + qkv[k] + "_proj.bias");
      bias.insert(bias.end(), bk.begin(), bk.end());
    }
    add(h + "attn.c_attn.weight", {D, 3 * D}, w);
    add(h + "attn.c_attn.bias", {3 * D}, bias);
    add(h + "attn.c_proj.weight", {D, D}, transpose(get(b + "attention.o_proj.weight"), D, D));
    add(h + "attn.c_proj.bias", {D}, get(b + "attention.o_proj.bias"));
    add(h + "mlp.c_fc.weight", {D, F}, transpose(get(b + "ffn.up_proj.weight"), F, D));
    add(h + "mlp.c_fc.bias", {F}, get(b + "ffn.up_proj.bias"));
    add(h + "mlp.c_proj.weight", {F, D}, transpose(get(b + "ffn.down_proj.weight"), D, F));
    add(h + "mlp.c_proj.bias", {D}, get(b + "ffn.down_proj.bias"));
    add(h + "attn.bias", {1, 1, P, P}, std::vector<float>(size_t(P * P), 1.0f));  // mask buffer
  }
  write_safetensors(dir / "model.safetensors", views);
  HfImport in = read_hf_folder(dir.path());
  EXPECT_EQ(in.family, HfFamily::kGpt2);
  const std::vector<int32_t> ids = some_ids(30, V);
  EXPECT_TRUE(bit_equal(logits(*in.model, ids), logits(direct, ids)));
}

// ---------------------------------------------------------------- round trip

std::unique_ptr<LanguageModel> random_model(const ModelConfig& m, uint64_t seed) {
  auto model = std::make_unique<LanguageModel>(m);
  Rng rng(seed);
  model->init_weights(rng);
  for (auto& [n, p] : model->named_parameters())  // norms away from 1, biases away from 0
    if (n.find("norm") != std::string::npos || n.find("bias") != std::string::npos) {
      const std::vector<float> r = random_values(p->shape().numel(), seed + n.size());
      for (int64_t i = 0; i < p->shape().numel(); ++i) p->data()[i] += r[size_t(i)];
    }
  return model;
}

struct RoundTripCase {
  const char* preset;
  const char* change;
  void (*apply)(ModelConfig&);
  HfFamily family;
};

TEST(HfInterop, ExportImportRoundTripIsBitIdentical) {
  const RoundTripCase cases[] = {
      {"llama-tiny", "untied", [](ModelConfig& m) { m.tie_embeddings = false; }, HfFamily::kLlama},
      {"llama-tiny", "qk_norm", [](ModelConfig& m) { m.block.qk_norm = true; }, HfFamily::kQwen3},
      {"llama-tiny", "qk_norm, head_dim 48",
       [](ModelConfig& m) {
         m.block.qk_norm = true;
         m.block.head_dim_override = 48;
       },
       HfFamily::kQwen3},
      {"llama-tiny", "qkv_bias", [](ModelConfig& m) { m.block.qkv_bias = true; }, HfFamily::kQwen2},
      {"llama-tiny", "Gemma",
       [](ModelConfig& m) {
         m.block.norm_unit_offset = true;
         m.block.ffn_activation = "gelu_tanh";
         m.block.head_dim_override = 48;
         m.embed_scale = std::sqrt(double(m.block.d_model));
       },
       HfFamily::kGemma},
      {"gpt-tiny", "", [](ModelConfig&) {}, HfFamily::kGpt2},
      {"gpt-tiny", "gelu_tanh", [](ModelConfig& m) { m.block.ffn_activation = "gelu_tanh"; },
       HfFamily::kGpt2},
      {"mistral-tiny", "", [](ModelConfig&) {}, HfFamily::kMistral},
      {"mixtral-tiny", "", [](ModelConfig&) {}, HfFamily::kMixtral}};
  for (const RoundTripCase& c : cases) {
    SCOPED_TRACE(std::string(c.preset) + " " + c.change);
    ModelConfig m = preset_model(c.preset);
    c.apply(m);
    auto model = random_model(m, 11);
    const std::vector<int32_t> ids = some_ids(80, m.vocab_size);  // past mistral's window 64
    const std::vector<float> want = logits(*model, ids);
    for (const char* dt : {"f32", "bf16", "f16"}) {
      SCOPED_TRACE(dt);
      TempDir dir;
      const HfExportReport r = export_hf_folder(dir.path(), *model, ByteTokenizer(), dt);
      EXPECT_EQ(r.family, c.family);
      const json cfg = json::parse(test::read_bytes(dir / "config.json"));
      EXPECT_EQ(cfg["model_type"], hf_model_type(c.family));
      HfImport in = read_hf_folder(dir.path());
      ASSERT_NE(in.tokenizer, nullptr);
      EXPECT_EQ(in.tokenizer->name(), "byte");
      const std::vector<float> got = logits(*in.model, ids);
      if (std::string(dt) == "f32") {
        EXPECT_TRUE(bit_equal(got, want));
        continue;
      }
      // bf16 / f16: exactly the model with every weight rounded the same way.
      auto rounded = random_model(m, 11);
      for (auto& [n, p] : rounded->named_parameters()) {
        TensorView v{
            "x", {p->shape().numel()}, p->data(), std::string(dt) == "bf16" ? "BF16" : "F16"};
        write_safetensors(dir / "one.safetensors", {v});
        const std::vector<float> r = read_safetensors(dir / "one.safetensors").tensors.at("x").data;
        std::copy(r.begin(), r.end(), p->data());
      }
      EXPECT_TRUE(bit_equal(got, logits(*rounded, ids)));
      double diff = 0;
      for (size_t i = 0; i < got.size(); ++i)
        diff = std::max(diff, double(std::fabs(got[i] - want[i])));
      EXPECT_GT(diff, 0.0);   // the rounding is real
      EXPECT_LT(diff, 0.05);  // and small
    }
  }
}

// ---------------------------------------------------------------- tokenizers

TEST(HfInterop, TokenizersExportHonestly) {
  auto model = random_model(preset_model("gpt-tiny"), 3);
  {  // byte: tokenizer.json is a byte-level BPE without merges, ids = bytes
    TempDir dir;
    export_hf_folder(dir.path(), *model, ByteTokenizer(), "f32");
    ASSERT_TRUE(std::filesystem::exists(dir / "tokenizer.json"));
    const BpeTokenizer bpe = BpeTokenizer::load(dir.path());
    const std::string text = "h\xc3\xa9llo, world\n";
    EXPECT_EQ(bpe.encode(text), ByteTokenizer().encode(text));
  }
  {  // char: no HF equivalent, no tokenizer.json; the Blocklab record restores it
    TempDir dir;
    const CharTokenizer chars = CharTokenizer::from_text("abcdefgh ");
    export_hf_folder(dir.path(), *model, chars, "f32");
    EXPECT_FALSE(std::filesystem::exists(dir / "tokenizer.json"));
    HfImport in = read_hf_folder(dir.path());
    ASSERT_NE(in.tokenizer, nullptr);
    EXPECT_EQ(in.tokenizer->name(), "char");
    EXPECT_EQ(in.tokenizer->encode("bad cafe"), chars.encode("bad cafe"));
    // Without the Blocklab record there is no tokenizer: a checkpoint import says so.
    std::filesystem::remove(dir / kHfBlocklabTokenizerFile);
    TempDir out;
    try {
      import_hf_checkpoint(dir.path(), out / "ck");
      ADD_FAILURE() << "imported without a tokenizer";
    } catch (const HfError& e) {
      EXPECT_NE(std::string(e.what()).find("no tokenizer.json"), std::string::npos);
    }
  }
}

// A byte-level BPE (as `tokenizer train` makes) goes out as tokenizer.json and
// comes back from it alone with the same ids.
TEST(HfInterop, BpeTokenizerRoundTripsThroughTokenizerJson) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, char(b));
  tokens.push_back("th");
  tokens.push_back("the");
  tokens.push_back(" the");
  const BpeTokenizer bpe(tokens,
                         {{int32_t('t'), int32_t('h')}, {256, int32_t('e')}, {int32_t(' '), 257}});
  ModelConfig m = preset_model("llama-tiny");
  m.vocab_size = 260;
  auto model = random_model(m, 2);
  TempDir dir;
  const HfExportReport r = export_hf_folder(dir.path(), *model, bpe, "f32");
  EXPECT_NE(r.tokenizer_note.find("tokenizer.json"), std::string::npos);
  std::filesystem::remove(dir / kHfBlocklabTokenizerFile);
  HfImport in = read_hf_folder(dir.path());
  ASSERT_NE(in.tokenizer, nullptr);
  EXPECT_EQ(in.tokenizer->name(), "bpe");
  const std::string text = "the other theme";
  EXPECT_EQ(in.tokenizer->encode(text), bpe.encode(text));
  EXPECT_LT(bpe.encode(text).size(), text.size());  // the merges are used
  // A tokenizer larger than the model's vocabulary is refused on export.
  m.vocab_size = 256;
  auto small = random_model(m, 2);
  EXPECT_THROW(export_hf_folder(dir / "x", *small, bpe, "f32"), std::invalid_argument);
}

TEST(HfInterop, ImportedCheckpointLoadsLikeAnyOther) {
  auto model = random_model(preset_model("llama-tiny"), 9);
  TempDir dir;
  export_hf_folder(dir / "hf", *model, ByteTokenizer(), "f32");
  import_hf_checkpoint(dir / "hf", dir / "ck");
  const CheckpointInfo info = read_checkpoint_info(dir / "ck");
  LanguageModel back(info.model);
  load_model_weights(dir / "ck", back);
  const std::vector<int32_t> ids = some_ids(16, 256);
  EXPECT_TRUE(bit_equal(logits(back, ids), logits(*model, ids)));
  EXPECT_LE(info.train.seq_len, info.model.block.max_seq_len);
}

// ---------------------------------------------------------------- hostile input

std::string import_error(const std::string& dir) {
  try {
    read_hf_folder(dir);
  } catch (const HfError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "(accepted)";
}

TEST(HfInterop, HostileFoldersGiveClearErrors) {
  auto model = random_model(preset_model("llama-tiny"), 4);
  TempDir base;
  export_hf_folder(base / "good", *model, ByteTokenizer(), "f32");
  ASSERT_EQ(import_error(base / "good"), "(accepted)");
  namespace fs = std::filesystem;
  auto copy = [&](const std::string& name) {
    fs::copy(base / "good", base / name, fs::copy_options::recursive);
    return base / name;
  };
  const SafetensorsFile good = read_safetensors(base / "good/model.safetensors");
  auto rewrite = [&](const std::string& dir, auto edit) {
    std::map<std::string, LoadedTensor> t = good.tensors;
    edit(t);
    std::vector<TensorView> v;
    for (auto& [n, x] : t) v.push_back({n, x.shape, x.data.data()});
    write_safetensors(dir + "/model.safetensors", v);
  };
  {
    const std::string d = copy("badjson");
    std::ofstream(d + "/config.json") << "{\"model_type\": \"llama\", ";
    EXPECT_NE(import_error(d).find("config.json"), std::string::npos);
  }
  {
    const std::string d = copy("notobject");
    std::ofstream(d + "/config.json") << "[1, 2]";
    EXPECT_NE(import_error(d).find("not a JSON object"), std::string::npos);
  }
  {
    const std::string d = copy("missing");
    rewrite(d, [](auto& t) { t.erase("model.layers.1.mlp.up_proj.weight"); });
    EXPECT_NE(import_error(d).find("model.layers.1.mlp.up_proj.weight"), std::string::npos);
  }
  {
    const std::string d = copy("shape");
    rewrite(d, [](auto& t) {
      LoadedTensor& x = t.at("model.layers.0.self_attn.k_proj.weight");
      std::swap(x.shape[0], x.shape[1]);
    });
    const std::string e = import_error(d);
    EXPECT_NE(e.find("model.layers.0.self_attn.k_proj.weight' has shape"), std::string::npos) << e;
  }
  {
    const std::string d = copy("extra");
    rewrite(d, [](auto& t) { t["model.layers.0.mlp.extra.weight"] = t.at("model.norm.weight"); });
    EXPECT_NE(import_error(d).find("unexpected tensor 'model.layers.0.mlp.extra.weight'"),
              std::string::npos);
  }
  {
    const std::string d = copy("nan");
    rewrite(d, [](auto& t) { t.at("model.norm.weight").data[3] = NAN; });
    EXPECT_NE(import_error(d).find("model.norm.weight"), std::string::npos);
  }
  {  // header claims F16 for a tensor whose bytes are F32-sized
    const std::string d = copy("dtype");
    std::string bytes = test::read_bytes(d + "/model.safetensors");
    const size_t at = bytes.find("\"F32\"");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 5, "\"F16\"");
    std::ofstream(d + "/model.safetensors", std::ios::binary) << bytes;
    EXPECT_NE(import_error(d).find("model.safetensors"), std::string::npos);
  }
  {
    const std::string d = copy("truncated");
    const std::string bytes = test::read_bytes(d + "/model.safetensors");
    std::ofstream(d + "/model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    EXPECT_NE(import_error(d).find("model.safetensors"), std::string::npos);
  }
  {  // a config claiming a far larger model than the file holds: refused before allocating
    const std::string d = copy("huge");
    json cfg = json::parse(test::read_bytes(d + "/config.json"));
    cfg["hidden_size"] = 8192;
    cfg["num_attention_heads"] = 64;
    cfg["num_key_value_heads"] = 64;
    cfg["head_dim"] = 128;
    cfg["intermediate_size"] = 28672;
    cfg["num_hidden_layers"] = 80;
    write_json(d + "/config.json", cfg);
    EXPECT_NE(import_error(d).find("tensors are missing"), std::string::npos);
  }
  {
    const std::string d = copy("noweights");
    fs::remove(d + "/model.safetensors");
    EXPECT_NE(import_error(d).find("no model.safetensors"), std::string::npos);
  }
  {  // shards: a valid index loads; one escaping the folder is refused
    const std::string d = copy("sharded");
    fs::rename(d + "/model.safetensors", d + "/model-00001-of-00002.safetensors");
    json map = json::object();
    std::vector<TensorView> second;
    std::map<std::string, LoadedTensor> t = good.tensors;
    std::vector<TensorView> first;
    for (auto& [n, x] : t) {
      const bool in_second = n.find("layers.1.") != std::string::npos;
      (in_second ? second : first).push_back({n, x.shape, x.data.data()});
      map[n] = in_second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    }
    write_safetensors(d + "/model-00001-of-00002.safetensors", first);
    write_safetensors(d + "/model-00002-of-00002.safetensors", second);
    write_json(d + "/model.safetensors.index.json",
               {{"metadata", json::object()}, {"weight_map", map}});
    EXPECT_EQ(import_error(d), "(accepted)");
    HfImport in = read_hf_folder(d);
    const std::vector<int32_t> ids = some_ids(12, 256);
    EXPECT_TRUE(bit_equal(logits(*in.model, ids), logits(*model, ids)));
    map["model.norm.weight"] = "../good/model.safetensors";
    write_json(d + "/model.safetensors.index.json", {{"weight_map", map}});
    EXPECT_NE(import_error(d).find("weight_map['model.norm.weight']"), std::string::npos);
  }
  EXPECT_NE(import_error(base / "nonexistent").find("not a directory"), std::string::npos);
}

}  // namespace
}  // namespace bl
