// llama.cpp GGUF: the writer / reader pair, LoRA adapters in llama.cpp's layout
// (keys, names, GGML dimension order, rotary row order) and the older
// Blocklab layout, a hand-made converter-style adapter, the base-model export,
// and refusals of models llama.cpp's llama architecture cannot run.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/presets.h"
#include "data/bpe_tokenizer.h"
#include "data/byte_level.h"
#include "expect_error.h"
#include "export/llama_gguf_export.h"
#include "export/llama_gguf_names.h"
#include "io/float16.h"
#include "io/gguf_reader.h"
#include "io/gguf_writer.h"
#include "lora/adapter_io.h"
#include "lora/lora.h"
#include "ops/rope.h"
#include "peft_test_util.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR

namespace bl {
namespace {

using test::contains;
using test::error_of;
using test::TempDir;

// A random adapter shaped for test::peft_model_config() (d 64, 4 heads of 16,
// 2 kv heads, d_ff 128) on q, k, v, o and down.
Adapter random_adapter(float alpha = 8.0f) {
  Adapter ad;
  ad.rank = 4;
  ad.alpha = alpha;
  Rng rng(3);
  const std::pair<const char*, std::pair<int64_t, int64_t>> mods[] = {
      {"layers.0.attention.q_proj", {64, 64}}, {"layers.0.attention.k_proj", {64, 32}},
      {"layers.1.attention.v_proj", {64, 32}}, {"layers.1.attention.o_proj", {64, 64}},
      {"layers.1.ffn.down_proj", {128, 64}},
  };
  for (auto [path, io] : mods) {
    AdapterLayer& x = ad.layers[path];
    x.rank = 4, x.in = io.first, x.out = io.second, x.alpha = alpha;
    for (int64_t i = 0; i < x.rank * x.in; ++i) x.a.push_back(float(rng.normal()));
    for (int64_t i = 0; i < x.out * x.rank; ++i) x.b.push_back(float(rng.normal()));
  }
  return ad;
}

TEST(Float16, RoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(65519.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(65520.0f), 0x7C00);                      // rounds past the largest half
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);             // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -26)), 0x0000);             // below half of it
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
  for (uint32_t h = 0; h < 0x7C00; ++h)  // every finite positive half survives both ways
    ASSERT_EQ(float_to_half(half_to_float(uint16_t(h))), h) << h;
  Rng rng(1);
  for (int i = 0; i < 10000; ++i) {
    const float x = float(rng.normal() * 10);
    const float y = half_to_float(float_to_half(x));
    EXPECT_LE(std::abs(x - y), std::abs(x) * std::ldexp(1.0f, -11) + std::ldexp(1.0f, -25)) << x;
  }
}

TEST(GgufFormat, WriterAndReaderAgreeOnEveryType) {
  TempDir dir;
  GgufWriter w;
  w.add_string("s", "text");
  w.add_u32("u", 4000000000u);
  w.add_i32("i", -7);
  w.add_f32("f", 0.25f);
  w.add_bool("b", true);
  w.add_strings("ss", {"a", "", "c d"});
  w.add_i32s("is", {1, -2, 3});
  w.add_f32s("fs", {0.5f, -1.5f});
  const std::vector<float> m = {1, 2, 3, 4, 5, 6};  // row-major (2, 3)
  w.add_tensor("m", {3, 2}, m.data());
  w.add_tensor("h", {6}, m.data(), GgmlType::kF16);
  w.write(dir / "x.gguf");
  const GgufFile f = GgufFile::read(dir / "x.gguf");
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.kv.size(), 9u);  // + general.alignment
  EXPECT_EQ(f.get_int("general.alignment"), 32);
  EXPECT_EQ(f.get_string("s"), "text");
  EXPECT_EQ(f.find("u")->i64, 4000000000);
  EXPECT_EQ(f.get_int("i"), -7);
  EXPECT_EQ(f.get_f32("f"), 0.25f);
  EXPECT_EQ(f.find("b")->type, GgufType::kBool);
  EXPECT_EQ(f.find("b")->i64, 1);
  EXPECT_EQ(f.find("ss")->strs, (std::vector<std::string>{"a", "", "c d"}));
  EXPECT_EQ(f.find("is")->elem, GgufType::kI32);
  EXPECT_EQ(f.find("is")->nums, (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(f.find("fs")->nums, (std::vector<double>{0.5, -1.5}));
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].ne, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(f.tensor_data(f.tensors[0]), m);
  EXPECT_EQ(f.tensors[1].type, GgmlType::kF16);
  EXPECT_EQ(f.tensors[1].offset, 32u);
  EXPECT_EQ(f.tensor_data(f.tensors[1]), m);  // small integers are exact halves
  EXPECT_TRUE(contains(error_of<GgufError>([&] { f.get_string("u"); }), "must be a string"));
  EXPECT_TRUE(contains(error_of<GgufError>([&] { f.get_int("missing"); }), "missing"));
}

TEST(GgufNames, MapBothWaysAndOnlyLlamaTensors) {
  EXPECT_EQ(*llama_gguf_tensor_name("layers.3.attention.q_proj.weight"), "blk.3.attn_q.weight");
  EXPECT_EQ(*llama_gguf_tensor_name("layers.0.attention.o_proj.weight"),
            "blk.0.attn_output.weight");
  EXPECT_EQ(*llama_gguf_tensor_name("layers.1.ffn.gate_proj.weight"), "blk.1.ffn_gate.weight");
  EXPECT_EQ(*llama_gguf_tensor_name("layers.12.ffn_norm.weight"), "blk.12.ffn_norm.weight");
  EXPECT_EQ(*llama_gguf_tensor_name("embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(*llama_gguf_tensor_name("norm.weight"), "output_norm.weight");
  EXPECT_EQ(*llama_gguf_tensor_name("lm_head.weight"), "output.weight");
  EXPECT_FALSE(llama_gguf_tensor_name("layers.0.attention.q_norm.weight"));
  EXPECT_FALSE(llama_gguf_tensor_name("layers.0.ffn.experts.up_proj.weight"));
  EXPECT_FALSE(llama_gguf_tensor_name("position.weight"));
  EXPECT_FALSE(internal_from_llama_gguf("blk.01.attn_q.weight"));  // one spelling per index
  EXPECT_FALSE(internal_from_llama_gguf("blk.x.attn_q.weight"));
  LanguageModel m(test::peft_model_config(false));
  for (auto& [n, p] : m.named_parameters()) {
    const auto g = llama_gguf_tensor_name(n);
    ASSERT_TRUE(g) << n;
    EXPECT_EQ(*internal_from_llama_gguf(*g), n);
  }
}

// llama.cpp's llama architecture rotates adjacent pairs (2i, 2i+1) of a head
// by pos * theta^(-2i/d) (ggml_rope, mode 0). Applied to permuted rows it must
// give the permutation of Blocklab's rotate-half RoPE.
TEST(GgufNames, PermutedRowsMakeAdjacentPairRopeEqualRotateHalf) {
  const int64_t H = 2, D = 8;
  const float theta = 10000.0f;
  Rng rng(5);
  Parameter in("x", Shape{1, 1, H * D});
  in.init_normal(rng, 1.0f);
  const std::vector<float> x(in.data(), in.data() + H * D);
  for (int64_t pos : {0, 1, 7, 100}) {
    NoGradGuard ng;
    Tensor r = rope(in.tensor(), H, theta, pos);
    std::vector<float> want(r.data(), r.data() + H * D);
    llama_rope_permute_rows(want.data(), H * D, 1, H, true);
    std::vector<float> p = x;
    llama_rope_permute_rows(p.data(), H * D, 1, H, true);
    std::vector<float> got(p.size());
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double ang = double(pos) * std::pow(double(theta), -2.0 * double(i) / double(D));
        const float c = float(std::cos(ang)), s = float(std::sin(ang));
        const float a = p[size_t(h * D + 2 * i)], b = p[size_t(h * D + 2 * i + 1)];
        got[size_t(h * D + 2 * i)] = a * c - b * s;
        got[size_t(h * D + 2 * i + 1)] = a * s + b * c;
      }
    EXPECT_LT(test::max_abs_diff(got, want), 1e-5) << pos;
  }
  // to_gguf then back is the identity, and it is a real permutation.
  std::vector<float> rows(32);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i);
  std::vector<float> p = rows;
  llama_rope_permute_rows(p.data(), 16, 2, 2, true);
  EXPECT_NE(p, rows);
  // head_dim 8: GGUF row 2i + s of a head is HF row s * 4 + i.
  EXPECT_EQ(p[1 * 2], rows[4 * 2]);           // GGUF row 1 (i 0, s 1) = HF row 4
  EXPECT_EQ(p[2 * 2], rows[1 * 2]);           // GGUF row 2 (i 1, s 0) = HF row 1
  EXPECT_EQ(p[9 * 2 + 1], rows[12 * 2 + 1]);  // head 1
  llama_rope_permute_rows(p.data(), 16, 2, 2, false);
  EXPECT_EQ(p, rows);
}

TEST(GgufAdapter, LlamaCppLayoutHasEveryKeyNameAndShape) {
  TempDir dir;
  const ModelConfig cfg = test::peft_model_config();
  const Adapter ad = random_adapter();
  write_gguf_adapter(dir / "a.gguf", ad, cfg);
  const GgufFile f = GgufFile::read(dir / "a.gguf");
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("general.type"), "adapter");
  EXPECT_EQ(f.get_string("adapter.type"), "lora");
  EXPECT_EQ(f.find("adapter.lora.alpha")->type, GgufType::kF32);
  EXPECT_EQ(f.get_f32("adapter.lora.alpha"), 8.0f);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 4);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 2);
  EXPECT_FALSE(f.find("lora.rank"));
  EXPECT_FALSE(f.find("lora.alpha"));
  ASSERT_EQ(f.tensors.size(), 10u);
  for (auto& [path, x] : ad.layers) {
    const std::string base = *llama_gguf_tensor_name(path + ".weight");
    const GgufTensorInfo* a = f.tensor(base + ".lora_a");
    const GgufTensorInfo* b = f.tensor(base + ".lora_b");
    ASSERT_TRUE(a && b) << base;
    EXPECT_EQ(a->type, GgmlType::kF32);
    // llama.cpp: lora_a ne = [in, r] (= base ne[0]), lora_b ne = [r, out].
    EXPECT_EQ(a->ne, (std::vector<uint64_t>{uint64_t(x.in), uint64_t(x.rank)})) << base;
    EXPECT_EQ(b->ne, (std::vector<uint64_t>{uint64_t(x.rank), uint64_t(x.out)})) << base;
    EXPECT_EQ(f.tensor_data(*a), x.a) << base;
    std::vector<float> want_b = x.b;
    const int64_t heads = llama_rope_permute_heads(path, 4, 2);
    if (heads) llama_rope_permute_rows(want_b.data(), x.out, x.rank, heads, true);
    EXPECT_EQ(f.tensor_data(*b), want_b) << base;
    EXPECT_EQ(f.tensor_data(*b) == x.b, heads == 0) << base;  // only q/k rows move
  }
  EXPECT_TRUE(f.tensor("blk.0.attn_q.weight.lora_a"));
  EXPECT_TRUE(f.tensor("blk.1.ffn_down.weight.lora_b"));
}

TEST(GgufAdapter, LlamaCppLayoutRoundTripsExactly) {
  TempDir dir;
  const ModelConfig cfg = test::peft_model_config();
  const Adapter ad = random_adapter();
  write_gguf_adapter(dir / "a.gguf", ad, cfg);
  for (const ModelConfig* base : {static_cast<const ModelConfig*>(nullptr), &cfg}) {
    const Adapter back = read_gguf_adapter(dir / "a.gguf", base);
    EXPECT_EQ(back.rank, 4);
    EXPECT_EQ(back.alpha, 8.0f);
    ASSERT_EQ(back.layers.size(), ad.layers.size());
    for (auto& [p, x] : ad.layers) {
      const AdapterLayer& y = back.layers.at(p);
      EXPECT_EQ(y.a, x.a) << p;
      EXPECT_EQ(y.b, x.b) << p;
      EXPECT_EQ(y.rank, x.rank);
      EXPECT_EQ(y.in, x.in);
      EXPECT_EQ(y.out, x.out);
      EXPECT_EQ(y.alpha, x.alpha);
    }
  }
  // A base with other head counts is named as the likely mistake.
  ModelConfig other = cfg;
  other.block.n_kv_heads = 4;
  EXPECT_TRUE(contains(error_of<AdapterError>([&] { read_gguf_adapter(dir / "a.gguf", &other); }),
                       "llama.attention.head_count_kv = 2 but the model has 4"));
}

TEST(GgufAdapter, PerLayerAlphaIsFoldedIntoB) {
  TempDir dir;
  const ModelConfig cfg = test::peft_model_config();
  Adapter ad = random_adapter();
  ad.layers.at("layers.1.ffn.down_proj").alpha = 6.0f;
  write_gguf_adapter(dir / "a.gguf", ad, cfg);
  const Adapter back = read_gguf_adapter(dir / "a.gguf");
  const AdapterLayer &x = ad.layers.at("layers.1.ffn.down_proj"),
                     &y = back.layers.at("layers.1.ffn.down_proj");
  EXPECT_EQ(y.alpha, 8.0f);  // llama.cpp has one alpha
  for (size_t i = 0; i < x.b.size(); ++i)
    EXPECT_FLOAT_EQ(y.b[i] * y.scaling(), x.b[i] * x.scaling()) << i;
}

TEST(GgufAdapter, OlderBlocklabLayoutStillReads) {
  TempDir dir;
  Adapter ad = random_adapter();
  ad.layers.at("layers.1.ffn.down_proj").alpha = 6.0f;
  write_gguf_adapter_legacy(dir / "old.gguf", ad);
  const GgufFile f = GgufFile::read(dir / "old.gguf");
  EXPECT_TRUE(f.tensor("lora.layers.0.attention.q_proj.weight_a"));
  EXPECT_EQ(f.get_int("lora.rank"), 4);
  EXPECT_FALSE(f.find("general.architecture"));
  const Adapter back = read_gguf_adapter(dir / "old.gguf");
  for (auto& [p, x] : ad.layers) {
    EXPECT_EQ(back.layers.at(p).a, x.a);
    EXPECT_EQ(back.layers.at(p).b, x.b);
    EXPECT_EQ(back.layers.at(p).alpha, x.alpha);
  }
}

// What llama.cpp's convert_lora_to_gguf.py writes for a PEFT adapter of a HF
// Llama: general.architecture / type, adapter.type / lora.alpha, tensors named
// after the base tensor + ".lora_a" / ".lora_b", q/k B rows permuted, here in F16
// (--outtype f16), and no head counts.
TEST(GgufAdapter, ConverterStyleFileImports) {
  TempDir dir;
  const ModelConfig cfg = test::peft_model_config();
  Adapter ad = random_adapter(16.0f);
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "adapter");
  w.add_string("general.name", "Some Llama Lora");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", 16.0f);
  for (auto& [p, x] : ad.layers) {
    for (float& v : x.a) v = half_to_float(float_to_half(v));  // what F16 keeps
    for (float& v : x.b) v = half_to_float(float_to_half(v));
    const std::string base = *llama_gguf_tensor_name(p + ".weight");
    std::vector<float> b = x.b;
    if (const int64_t h = llama_rope_permute_heads(p, 4, 2))
      llama_rope_permute_rows(b.data(), x.out, x.rank, h, true);
    w.add_tensor(base + ".lora_a", {uint64_t(x.in), uint64_t(x.rank)}, x.a.data(), GgmlType::kF16);
    w.add_tensor(base + ".lora_b", {uint64_t(x.rank), uint64_t(x.out)}, b.data(), GgmlType::kF16);
  }
  w.write(dir / "conv.gguf");
  // q/k rows cannot be put back without the base's head counts.
  EXPECT_TRUE(contains(error_of<AdapterError>([&] { read_gguf_adapter(dir / "conv.gguf"); }),
                       "needs llama.attention.head_count"));
  const Adapter back = read_gguf_adapter(dir / "conv.gguf", &cfg);
  EXPECT_EQ(back.alpha, 16.0f);
  for (auto& [p, x] : ad.layers) {
    EXPECT_EQ(back.layers.at(p).a, x.a) << p;
    EXPECT_EQ(back.layers.at(p).b, x.b) << p;
  }
  // It attaches to the model like any adapter.
  LanguageModel m(cfg);
  test::init_model(m);
  attach_adapter(m, back);
  EXPECT_EQ(lora_parameters(m).size(), 10u);
}

TEST(GgufAdapter, MissingAlphaMeansScaleOneAsInLlamaCpp) {
  TempDir dir;
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  const std::vector<float> a(3 * 64, 0.5f), b(32 * 3, 0.25f);
  w.add_tensor("blk.0.attn_v.weight.lora_a", {64, 3}, a.data());
  w.add_tensor("blk.0.attn_v.weight.lora_b", {3, 32}, b.data());
  w.write(dir / "x.gguf");
  const Adapter back = read_gguf_adapter(dir / "x.gguf");
  EXPECT_EQ(back.layers.at("layers.0.attention.v_proj").alpha, 3.0f);  // = rank: scale 1
  EXPECT_EQ(back.layers.at("layers.0.attention.v_proj").scaling(), 1.0f);
}

TEST(GgufAdapter, BadLlamaCppFilesAreNamed) {
  TempDir dir;
  const auto write = [&](const std::string& arch, const std::string& type,
                         const std::string& tensor, std::vector<uint64_t> ne_a,
                         std::vector<uint64_t> ne_b) {
    GgufWriter w;
    if (!arch.empty()) w.add_string("general.architecture", arch);
    w.add_string("general.type", type);
    w.add_string("adapter.type", "lora");
    w.add_f32("adapter.lora.alpha", 4.0f);
    w.add_u32("llama.attention.head_count", 4);
    w.add_u32("llama.attention.head_count_kv", 2);
    std::vector<float> a(ne_a[0] * ne_a[1], 0.1f), b(ne_b[0] * ne_b[1], 0.1f);
    w.add_tensor(tensor + ".lora_a", ne_a, a.data());
    w.add_tensor(tensor + ".lora_b", ne_b, b.data());
    w.write(dir / "bad.gguf");
    return error_of<AdapterError>([&] { read_gguf_adapter(dir / "bad.gguf"); });
  };
  EXPECT_TRUE(contains(write("qwen2", "adapter", "blk.0.attn_v.weight", {64, 2}, {2, 32}),
                       "general.architecture is 'qwen2'"));
  EXPECT_TRUE(contains(write("", "adapter", "blk.0.attn_v.weight", {64, 2}, {2, 32}),
                       "general.architecture is ''"));
  EXPECT_TRUE(contains(write("llama", "model", "blk.0.attn_v.weight", {64, 2}, {2, 32}),
                       "neither a llama.cpp LoRA adapter"));
  EXPECT_TRUE(contains(write("llama", "adapter", "blk.0.attn_v.weight", {64, 2}, {3, 32}),
                       "has rank 3 but its lora_a has rank 2"));
  EXPECT_TRUE(contains(write("llama", "adapter", "token_embd.weight", {64, 2}, {2, 40}),
                       "no Linear layer"));
  EXPECT_TRUE(contains(write("llama", "adapter", "blk.0.attn_q_a.weight", {64, 2}, {2, 40}),
                       "no Linear layer"));
  EXPECT_TRUE(contains(write("llama", "adapter", "blk.0.attn_q.weight", {64, 2}, {2, 30}),
                       "not 4 heads of an even size"))
      << write("llama", "adapter", "blk.0.attn_q.weight", {64, 2}, {2, 30});
}

TEST(GgufAdapter, ModelsLlamaCppCannotRunAreRefusedNamingThePart) {
  TempDir dir;
  const Adapter ad = random_adapter();
  const auto refusal = [&](const std::function<void(ModelConfig&)>& edit) {
    ModelConfig c = test::peft_model_config();
    edit(c);
    return error_of<AdapterError>([&] { write_gguf_adapter(dir / "r.gguf", ad, c); });
  };
  EXPECT_TRUE(contains(refusal([](ModelConfig& c) { c.block.ffn = "standard"; }),
                       "ffn 'standard' (layer 0): llama.cpp's llama architecture needs 'gated'"));
  EXPECT_TRUE(
      contains(refusal([](ModelConfig& c) { c.block.norm = "layer_norm"; }), "norm 'layer_norm'"));
  EXPECT_TRUE(
      contains(refusal([](ModelConfig& c) { c.block.position = "alibi"; }), "position 'alibi'"));
  EXPECT_TRUE(
      contains(refusal([](ModelConfig& c) { c.block.attention = "mla"; }), "attention 'mla'"));
  EXPECT_TRUE(contains(refusal([](ModelConfig& c) { c.block.qk_norm = true; }), "qk_norm"));
  EXPECT_TRUE(contains(refusal([](ModelConfig& c) { c.block.bias = true; }), "block.bias"));
  EXPECT_TRUE(contains(refusal([](ModelConfig& c) { c.mtp_n_predict = 1; }), "mtp_n_predict"));
  const auto layer1 = [](const std::function<void(BlockConfig&)>& edit) {
    return [edit](ModelConfig& c) {
      c.block_configs = {c.block, c.block};
      edit(c.block_configs[1]);
    };
  };
  EXPECT_TRUE(contains(refusal(layer1([](BlockConfig& b) { b.attention = "mamba2"; })),
                       "attention 'mamba2' (layer 1)"));
  EXPECT_TRUE(contains(refusal(layer1([](BlockConfig& b) { b.d_ff = 256; })),
                       "layer 1 differs from layer 0"));
  EXPECT_TRUE(
      contains(refusal([](ModelConfig& c) { c.hybrid_pattern = "*M"; }), "ffn 'none' (layer 0)"));
  write_gguf_adapter(dir / "ok.gguf", ad, test::peft_model_config());  // the unedited base is fine
  EXPECT_TRUE(contains(refusal([](ModelConfig& c) { c.block.ffn = "standard"; }),
                       "--gguf-layout blocklab"));
  // The older layout stays available for any model.
  write_gguf_adapter_legacy(dir / "any.gguf", ad);
  EXPECT_EQ(read_gguf_adapter(dir / "any.gguf").layers.size(), ad.layers.size());
}

// ---------------------------------------------------------------- base export

std::unique_ptr<LanguageModel> base_model(bool tie, int64_t vocab) {
  ModelConfig c = test::peft_model_config(tie);
  c.vocab_size = vocab;
  c.name = "tiny-llama";
  auto m = std::make_unique<LanguageModel>(c);
  test::init_model(*m, 9);
  return m;
}

TEST(GgufExport, WritesLlamaKeysTensorsAndShapes) {
  TempDir dir;
  for (bool tie : {true, false}) {
    auto m = base_model(tie, 256);
    ByteTokenizer tok;
    const GgufExportSummary s = export_llama_gguf(dir / "m.gguf", *m, tok);
    const GgufFile f = GgufFile::read(dir / "m.gguf");
    const size_t n_tensors = 1 + 9 * 2 + 1 + (tie ? 0 : 1);
    EXPECT_EQ(s.n_tensors, n_tensors);
    ASSERT_EQ(f.tensors.size(), n_tensors);
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.get_string("general.name"), "tiny-llama");
    EXPECT_EQ(f.get_int("general.file_type"), 0);
    for (auto [key, want] :
         std::vector<std::pair<const char*, int64_t>>{{"llama.context_length", 32},
                                                      {"llama.embedding_length", 64},
                                                      {"llama.block_count", 2},
                                                      {"llama.feed_forward_length", 128},
                                                      {"llama.attention.head_count", 4},
                                                      {"llama.attention.head_count_kv", 2},
                                                      {"llama.rope.dimension_count", 16},
                                                      {"llama.vocab_size", 256}}) {
      ASSERT_TRUE(f.find(key)) << key;
      EXPECT_EQ(f.find(key)->type, GgufType::kU32) << key;
      EXPECT_EQ(f.get_int(key), want) << key;
    }
    EXPECT_EQ(f.get_f32("llama.rope.freq_base"), 10000.0f);
    EXPECT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strs.size(), 256u);
    EXPECT_EQ(f.find("tokenizer.ggml.token_type")->elem, GgufType::kI32);
    EXPECT_EQ(f.find("tokenizer.ggml.scores")->elem, GgufType::kF32);
    EXPECT_EQ(f.find("tokenizer.ggml.scores")->n, 256u);
    EXPECT_EQ(f.find("tokenizer.ggml.merges")->n, 0u);
    EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 0);
    EXPECT_EQ(f.find("tokenizer.ggml.add_bos_token")->i64, 0);
    EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strs[32], "\xC4\xA0");  // ' ' as GPT-2's 'Ġ'
    EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strs['a'], "a");
    EXPECT_EQ(bool(f.tensor("output.weight")), !tie);
    // Every tensor: the parameter's values, GGML order, q/k rows permuted.
    for (auto& [n, p] : m->named_parameters()) {
      const GgufTensorInfo* t = f.tensor(*llama_gguf_tensor_name(n));
      ASSERT_TRUE(t) << n;
      std::vector<uint64_t> ne;
      for (int i = p->shape().rank - 1; i >= 0; --i) ne.push_back(uint64_t(p->shape()[i]));
      EXPECT_EQ(t->ne, ne) << n;
      EXPECT_EQ(t->type, GgmlType::kF32) << n;
      std::vector<float> want(p->data(), p->data() + p->numel());
      if (const int64_t h = llama_rope_permute_heads(n, 4, 2))
        llama_rope_permute_rows(want.data(), p->shape()[0], p->shape()[1], h, true);
      EXPECT_EQ(f.tensor_data(*t), want) << n;
    }
    EXPECT_EQ(f.tensors[0].name, "token_embd.weight");
    EXPECT_EQ(f.tensors[1].name, "blk.0.attn_norm.weight");
  }
}

TEST(GgufExport, F16ValuesAreTheNearestHalvesAndNormsStayF32) {
  TempDir dir;
  auto m = base_model(false, 256);
  ByteTokenizer tok;
  GgufExportOptions opt;
  opt.dtype = GgmlType::kF16;
  export_llama_gguf(dir / "h.gguf", *m, tok, opt);
  const GgufFile f = GgufFile::read(dir / "h.gguf");
  EXPECT_EQ(f.get_int("general.file_type"), 1);
  double worst = 0;
  for (auto& [n, p] : m->named_parameters()) {
    const GgufTensorInfo* t = f.tensor(*llama_gguf_tensor_name(n));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->type, p->shape().rank == 1 ? GgmlType::kF32 : GgmlType::kF16) << n;
    std::vector<float> want(p->data(), p->data() + p->numel());
    if (const int64_t h = llama_rope_permute_heads(n, 4, 2))
      llama_rope_permute_rows(want.data(), p->shape()[0], p->shape()[1], h, true);
    const std::vector<float> got = f.tensor_data(*t);
    for (size_t i = 0; i < want.size(); ++i) {
      if (p->shape().rank == 1) {
        ASSERT_EQ(got[i], want[i]);
        continue;
      }
      ASSERT_EQ(got[i], half_to_float(float_to_half(want[i]))) << n << " " << i;
      const double rel = std::abs(got[i] - want[i]) / std::max(std::abs(want[i]), 6.1e-5f);
      worst = std::max(worst, rel);
    }
  }
  EXPECT_LE(worst, std::ldexp(1.0, -11));  // half a unit in the last place of a half
  EXPECT_GT(worst, 0.0);
}

TEST(GgufExport, CharTokenizerBuildsMultiByteCharactersByMerges) {
  TempDir dir;
  const CharTokenizer tok = CharTokenizer::from_text("ab \xC3\xA9\xE2\x80\x94\xE2\x80\x99\n");
  auto m = base_model(true, tok.vocab_size());
  export_llama_gguf(dir / "c.gguf", *m, tok);
  const GgufFile f = GgufFile::read(dir / "c.gguf");
  const auto& tokens = f.find("tokenizer.ggml.tokens")->strs;
  ASSERT_EQ(tokens.size(), 8u);  // \n, ' ', a, b, é, —, ’ and an end-of-text token
  // No character can end the text (llama-cli --ignore-eos would ban it): the
  // extra control token is EOS, with zero embedding and output rows.
  EXPECT_EQ(tokens[7], "<|endoftext|>");
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 7);
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->nums.at(7), 3.0);
  EXPECT_EQ(f.get_int("llama.vocab_size"), 8);
  const GgufTensorInfo* embd = f.tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  ASSERT_EQ(embd->ne.at(1), 8u);
  const std::vector<float> e = f.tensor_data(*embd);
  const int64_t d = int64_t(embd->ne[0]);
  Parameter& table = *m->named_parameters().front().second;  // embed_tokens.weight
  ASSERT_EQ(m->named_parameters().front().first, "embed_tokens.weight");
  for (int64_t i = 0; i < 7 * d; ++i) ASSERT_EQ(e[size_t(i)], table.data()[i]) << i;
  for (int64_t i = 7 * d; i < 8 * d; ++i) EXPECT_EQ(e[size_t(i)], 0.0f) << i;
  EXPECT_EQ(tokens[0], "\xC4\x8A");  // '\n' as GPT-2's 'Ċ'
  EXPECT_EQ(tokens[4], byte_level::encode("\xC3\xA9"));
  EXPECT_EQ(tokens[5], byte_level::encode("\xE2\x80\x94"));
  // é: one merge; — and ’ share the prefix merge E2 80 (written once).
  const std::vector<std::string> want = {
      byte_level::encode("\xC3") + " " + byte_level::encode("\xA9"),
      byte_level::encode("\xE2") + " " + byte_level::encode("\x80"),
      byte_level::encode("\xE2\x80") + " " + byte_level::encode("\x94"),
      byte_level::encode("\xE2\x80") + " " + byte_level::encode("\x99")};
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->strs, want);
}

TEST(GgufExport, BpeTokenizerKeepsMergesAndSpecialTokens) {
  TempDir dir;
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, char(b)));
  tokens.push_back("th");
  tokens.push_back(" th");
  tokens.push_back("<|endoftext|>");
  const BpeTokenizer tok(tokens, {{'t', 'h'}, {' ', 256}}, {{258, "<|endoftext|>", true}});
  auto m = base_model(true, 259);
  export_llama_gguf(dir / "b.gguf", *m, tok);
  const GgufFile f = GgufFile::read(dir / "b.gguf");
  const auto& t = f.find("tokenizer.ggml.tokens")->strs;
  EXPECT_EQ(t[256], "th");
  EXPECT_EQ(t[257], "\xC4\xA0th");
  EXPECT_EQ(t[258], "<|endoftext|>");
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->nums[258], 3);  // control
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->nums[256], 1);  // normal
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->strs,
            (std::vector<std::string>{"t h", "\xC4\xA0 th"}));
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 258);
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "gpt-2");
  // Without special tokens: EOS is the NUL byte's token (here moved to id 5).
  std::swap(tokens[0], tokens[5]);
  tokens.resize(258);
  const BpeTokenizer plain(tokens, {{'t', 'h'}, {' ', 256}});
  auto m2 = base_model(true, 258);
  export_llama_gguf(dir / "p.gguf", *m2, plain);
  const GgufFile g = GgufFile::read(dir / "p.gguf");
  EXPECT_EQ(g.get_int("tokenizer.ggml.eos_token_id"), 5);
  EXPECT_EQ(g.get_int("tokenizer.ggml.bos_token_id"), 5);
}

TEST(GgufExport, RefusesWhatLlamaCppCannotRun) {
  TempDir dir;
  ByteTokenizer tok;
  ModelConfig gpt = test::peft_model_config();
  gpt.vocab_size = 256;
  gpt.block.ffn = "standard";
  gpt.block.norm = "layer_norm";
  LanguageModel g(gpt);
  EXPECT_TRUE(
      contains(error_of<GgufExportError>([&] { export_llama_gguf(dir / "g.gguf", g, tok); }),
               "llama.cpp cannot run this model: ffn 'standard' (layer 0)"));
  auto m = base_model(true, 40);
  EXPECT_TRUE(
      contains(error_of<GgufExportError>([&] { export_llama_gguf(dir / "v.gguf", *m, tok); }),
               "the tokenizer has 256 tokens but the model's vocab_size is 40"));
  auto l = base_model(true, 256);
  apply_lora(*l, 2, 4.0f, {"q"});
  EXPECT_TRUE(
      contains(error_of<GgufExportError>([&] { export_llama_gguf(dir / "l.gguf", *l, tok); }),
               "merge it first"));
  EXPECT_FALSE(std::filesystem::exists(dir / "g.gguf"));
  auto big = base_model(true, 256);
  for (auto& [n, p] : big->named_parameters())
    if (n == "layers.1.ffn.up_proj.weight") p->data()[5] = 70000.0f;
  GgufExportOptions f16;
  f16.dtype = GgmlType::kF16;
  EXPECT_TRUE(contains(
      error_of<GgufExportError>([&] { export_llama_gguf(dir / "big.gguf", *big, tok, f16); }),
      "beyond F16's range"));
  export_llama_gguf(dir / "big.gguf", *big, tok);  // F32 keeps it
}

// Which shipped presets llama.cpp can run (docs/gguf.md lists them).
TEST(GgufExport, LlamaPresetsPassOthersAreRefused) {
  std::string admitted;
  for (const std::string& name : preset_names())
    if (llama_cpp_incompatibility(load_preset(name).model).empty()) admitted += name + " ";
  EXPECT_NE(admitted.find("llama-tiny "), std::string::npos) << admitted;
  EXPECT_NE(admitted.find("llama-small "), std::string::npos) << admitted;
  EXPECT_EQ(admitted.find("gpt-tiny "), std::string::npos) << admitted;
  EXPECT_EQ(admitted.find("mixtral-tiny "), std::string::npos) << admitted;
  std::printf("presets llama.cpp can run: %s\n", admitted.c_str());
}

}  // namespace
}  // namespace bl

namespace bl {
namespace {
// The fuzzer's seed for llama.cpp's layout (fuzz/corpus/gguf) stays a valid adapter.
TEST(GgufAdapter, FuzzSeedIsAValidLlamaCppAdapter) {
  const Adapter ad = read_gguf_adapter(std::string(BLOCKLAB_SOURCE_DIR) +
                                       "/fuzz/corpus/gguf/llama-cpp-adapter.gguf");
  ASSERT_EQ(ad.layers.size(), 2u);
  EXPECT_EQ(ad.layers.at("layers.0.attention.q_proj").out, 8);
  EXPECT_EQ(ad.layers.at("layers.0.attention.v_proj").out, 4);
  EXPECT_EQ(ad.alpha, 8.0f);
}
}  // namespace
}  // namespace bl
