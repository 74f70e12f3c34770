// A quantized model (affine 2/4/8, NF4) saved as a checkpoint and loaded back
// computes the same logits bit for bit: the stored codes, scales and biases are
// the quantized matrices themselves. Damaged or mismatched files are named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli_support.h"
#include "core/linear.h"
#include "expect_error.h"
#include "io/safetensors.h"
#include "peft_test_util.h"
#include "quant/quantize.h"
#include "temp_files.h"
#include "train/checkpoint.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::error_of;
using test::TempDir;

std::map<std::string, const QuantizedMatrix*> matrices(LanguageModel& m) {
  std::map<std::string, const QuantizedMatrix*> v;
  if (m.quantized_embedding()) v["embed"] = m.quantized_embedding();
  if (m.quantized_lm_head()) v["head"] = m.quantized_lm_head();
  m.visit_named([&](const std::string& path, Module& mod) {
    if (auto* l = dynamic_cast<Linear*>(&mod); l && l->quantized()) v[path] = l->quantized_weight();
  });
  return v;
}

std::unique_ptr<LanguageModel> quantized_model(const QuantSpec& spec, bool tie) {
  auto m = std::make_unique<LanguageModel>(test::peft_model_config(tie));
  test::init_model(*m, 12);
  quantize_model(*m, spec);
  return m;
}

class QuantizedCheckpoint : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(QuantizedCheckpoint, RoundTripsBitForBit) {
  const QuantSpec spec = QuantSpec::parse(std::get<0>(GetParam()));
  const bool tie = std::get<1>(GetParam());
  TempDir dir;
  auto src = quantized_model(spec, tie);
  const std::vector<int32_t> ids = test::token_ids(2 * 7, 40);
  const std::vector<float> want = test::logits_of(*src, ids, 2, 7);
  ByteTokenizer tok;
  save_checkpoint(dir / "q", *src, TrainConfig{}, tok);

  const CheckpointInfo info = read_checkpoint_info(dir / "q");
  ASSERT_FALSE(info.quantization.is_null());
  EXPECT_EQ(info.quantization["spec"], spec.str());
  // 2 layers x 7 Linears + the embedding (+ the untied head).
  EXPECT_EQ(info.quantization["tensors"].size(), 14u + (tie ? 1u : 2u));
  const SafetensorsFile st = read_safetensors(dir / "q/model.safetensors", true);
  const LoadedTensor& codes = st.tensors.at("model.layers.0.self_attn.q_proj.weight.qcodes");
  EXPECT_EQ(codes.dtype, "U8");
  EXPECT_EQ(codes.shape, (std::vector<int64_t>{64, 64 * spec.bits / 8}));
  EXPECT_EQ(st.tensors.at("model.layers.0.self_attn.q_proj.weight.qscales").shape,
            (std::vector<int64_t>{64, 64 / spec.group_size}));
  EXPECT_EQ(st.tensors.count("model.layers.0.self_attn.q_proj.weight.qbiases"),
            spec.mode == QuantMode::kAffine ? 1u : 0u);
  EXPECT_EQ(st.tensors.count("model.layers.0.self_attn.q_proj.weight"), 0u);
  EXPECT_EQ(st.tensors.count("model.norm.weight"), 1u);  // norms stay float
  EXPECT_EQ(st.metadata.at("quantization"), spec.str());
  // Without allow_u8 the file's codes are an unsupported dtype, as before.
  EXPECT_THROW(read_safetensors(dir / "q/model.safetensors"), FormatError);

  LanguageModel back(info.model);
  load_model_weights(dir / "q", back);
  const auto a = matrices(*src), b = matrices(back);
  ASSERT_EQ(a.size(), b.size());
  for (auto& [name, q] : a) {
    const QuantizedMatrix* r = b.at(name);
    EXPECT_EQ(r->spec().str(), q->spec().str()) << name;
    EXPECT_EQ(r->packed(), q->packed()) << name;
    EXPECT_EQ(r->scales(), q->scales()) << name;
    EXPECT_EQ(r->biases(), q->biases()) << name;
    EXPECT_EQ(r->dequantize_all(), q->dequantize_all()) << name;
  }
  EXPECT_EQ(test::logits_of(back, ids, 2, 7), want);
  EXPECT_EQ(model_weight_bytes(back), model_weight_bytes(*src));
  for (auto& [n, p] : back.named_parameters()) EXPECT_EQ(p->name(), n);
  // Smaller than the float model's checkpoint.
  LanguageModel plain(test::peft_model_config(tie));
  save_checkpoint(dir / "f", plain, TrainConfig{}, tok);
  const double ratio = double(fs::file_size(dir / "q/model.safetensors")) /
                       double(fs::file_size(dir / "f/model.safetensors"));
  EXPECT_LT(ratio, spec.bits == 8 ? 0.4 : 0.25) << spec.str();
  std::printf("%s%s: model.safetensors %.3f of the float checkpoint\n", spec.str().c_str(),
              tie ? "" : " untied", ratio);
}

INSTANTIATE_TEST_SUITE_P(Specs, QuantizedCheckpoint,
                         ::testing::Combine(::testing::Values("affine2", "affine4", "affine8",
                                                              "nf4", "affine4@32", "nf4@32"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param);
                           for (char& c : s)
                             if (c == '@') c = '_';
                           return s + (std::get<1>(info.param) ? "_tied" : "_untied");
                         });

TEST(QuantizedCheckpointErrors, LayersLeftFloatStayFloat) {
  // Group 128 quantizes only down_proj (in 128); d_model 64 keeps the rest float.
  TempDir dir;
  auto src = quantized_model(QuantSpec::parse("affine4@128"), true);
  ByteTokenizer tok;
  save_checkpoint(dir / "q", *src, TrainConfig{}, tok);
  EXPECT_EQ(read_checkpoint_info(dir / "q").quantization["tensors"],
            (nlohmann::json{"layers.0.ffn.down_proj.weight", "layers.1.ffn.down_proj.weight"}));
  LanguageModel back(src->config());
  load_model_weights(dir / "q", back);
  const std::vector<int32_t> ids = test::token_ids(6, 40);
  EXPECT_EQ(test::logits_of(back, ids, 1, 6), test::logits_of(*src, ids, 1, 6));
  EXPECT_EQ(matrices(back).size(), 2u);
}

// The CLI loads a quantized checkpoint like any other (sample, export refusal).
TEST(QuantizedCheckpointErrors, CliSamplesAQuantizedCheckpoint) {
  TempDir dir;
  ModelConfig c = test::peft_model_config();
  c.vocab_size = 256;
  LanguageModel m(c);
  test::init_model(m, 3);
  quantize_model(m, QuantSpec::parse("nf4"));
  ByteTokenizer tok;
  save_checkpoint(dir / "q", m, TrainConfig{}, tok);
  auto r = test::run_cli("sample --run " + (dir / "q") + " --prompt ab --tokens 4 --seed 1");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = test::run_cli("export gguf " + (dir / "q") + " --out " + (dir / "q.gguf"));
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "a quantized model cannot be exported")) << r.out;
}

TEST(QuantizedCheckpointErrors, MismatchesAndDamageAreNamed) {
  TempDir dir;
  auto src = quantized_model(QuantSpec::parse("nf4"), true);
  ByteTokenizer tok;
  save_checkpoint(dir / "q", *src, TrainConfig{}, tok);
  // Into a model that is quantized already.
  auto q = quantized_model(QuantSpec::parse("nf4"), true);
  EXPECT_TRUE(contains(error_of<CheckpointError>([&] { load_model_weights(dir / "q", *q); }),
                       "loads into an unquantized model"));
  // checkpoint.json edited to another spec: the stored parts do not fit.
  const auto edit = [&](const std::function<void(nlohmann::json&)>& f) {
    fs::remove_all(dir / "e");
    fs::copy(dir / "q", dir / "e");
    nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "e/checkpoint.json"));
    f(j);
    std::ofstream(dir / "e/checkpoint.json") << j.dump();
    LanguageModel m(src->config());
    const std::vector<int32_t> ids = test::token_ids(6, 40);
    const std::vector<float> before = test::logits_of(m, ids, 1, 6);
    const std::string e = error_of<CheckpointError>([&] { load_model_weights(dir / "e", m); });
    EXPECT_EQ(test::logits_of(m, ids, 1, 6), before) << "the model changed: " << e;
    EXPECT_TRUE(matrices(m).empty());
    return e;
  };
  EXPECT_TRUE(contains(edit([](nlohmann::json& j) { j["quantization"]["spec"] = "affine4"; }),
                       "needs .qcodes, .qscales and .qbiases"));
  EXPECT_TRUE(contains(edit([](nlohmann::json& j) { j["quantization"]["spec"] = "nf4@32"; }),
                       "scales holds 40 values, the matrix needs 80"));
  EXPECT_TRUE(contains(edit([](nlohmann::json& j) { j["quantization"]["spec"] = "int3"; }),
                       "checkpoint.json"));
  // The embedding dropped from the list: its float weight is looked for, not found.
  EXPECT_TRUE(contains(edit([](nlohmann::json& j) { j["quantization"]["tensors"].erase(0); }),
                       "tensor 'model.embed_tokens.weight' is missing"));
  EXPECT_TRUE(contains(edit([](nlohmann::json& j) { j["quantization"]["tensors"].erase(1); }),
                       "is missing (the checkpoint does not fit this model"));
  EXPECT_TRUE(contains(edit([](nlohmann::json& j) {
                         j["quantization"]["tensors"].push_back("layers.0.attn_norm.weight");
                       }),
                       "'layers.0.attn_norm.weight' is no Linear weight"));
  EXPECT_TRUE(
      contains(edit([](nlohmann::json& j) { j.erase("quantization"); }), "unsupported dtype 'U8'"));
  // A float checkpoint whose norm weight was rewritten as U8 is refused too.
  LanguageModel plain(src->config());
  std::vector<TensorView> views;
  std::vector<uint8_t> bytes(64, 1);
  for (auto& [n, p] : plain.named_parameters()) {
    TensorView v{checkpoint_tensor_name(n), {}, p->data()};
    for (int i = 0; i < p->shape().rank; ++i) v.shape.push_back(p->shape()[i]);
    if (n == "norm.weight") v.data = nullptr, v.u8 = bytes.data();
    views.push_back(v);
  }
  save_checkpoint(dir / "u", plain, TrainConfig{}, tok);
  write_safetensors(dir / "u/model.safetensors", views);
  {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "u/checkpoint.json"));
    j["quantization"] = {{"spec", "nf4"}, {"tensors", nlohmann::json::array()}};
    std::ofstream(dir / "u/checkpoint.json") << j.dump();
  }
  LanguageModel m(src->config());
  EXPECT_TRUE(contains(error_of<CheckpointError>([&] { load_model_weights(dir / "u", m); }),
                       "'model.norm.weight' is U8"));
}

}  // namespace
}  // namespace bl
