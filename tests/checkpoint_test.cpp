// Checkpoints: SHA-256, the stable Hugging Face-style tensor naming, atomic
// save / load round trips, and clear errors for every kind of bad checkpoint.
#include "train/checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/presets.h"
#include "data/text_dataset.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "temp_files.h"
#include "train/trainer.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;

// Expects f() to throw CheckpointError whose message contains every needle.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << needles[0];
  } catch (const CheckpointError& e) {
    for (auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// 40 symbols: the tiny models' vocabulary.
constexpr const char* kVocab = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLM";

ModelConfig tiny_model(bool llama = false) {
  ModelConfig m;
  m.block.d_model = 32;
  m.block.n_heads = 2;
  m.block.d_ff = 64;
  m.block.max_seq_len = 32;
  if (llama) {
    m.block.attention = "gqa";
    m.block.n_kv_heads = 1;
    m.block.ffn = "gated";
    m.block.norm = "rms_norm";
    m.block.position = "rope";
    m.block.bias = false;
  } else {
    m.block.position = "learned";
  }
  m.n_layers = 2;
  m.vocab_size = 40;
  return m;
}

std::unique_ptr<LanguageModel> init_model(const ModelConfig& c, uint64_t seed) {
  auto m = std::make_unique<LanguageModel>(c);
  Rng rng(seed);
  m->init_weights(rng);
  return m;
}

std::vector<float> flat_weights(LanguageModel& m) {
  std::vector<float> v;
  for (auto& [n, p] : m.named_parameters()) v.insert(v.end(), p->data(), p->data() + p->numel());
  return v;
}

// ------------------------------------------------------------------ SHA-256

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalAndFileMatchOneShot) {
  std::string data;
  for (int i = 0; i < 5000; ++i) data += char(i * 7 + (i >> 3));
  const std::string expected = sha256_hex(data);
  for (size_t chunk : {1, 3, 63, 64, 65, 1000}) {
    Sha256 h;
    for (size_t i = 0; i < data.size(); i += chunk) h.update(data.substr(i, chunk));
    EXPECT_EQ(h.hex_digest(), expected) << chunk;
  }
  TempDir dir;
  write_bytes(dir / "f.bin", data);
  EXPECT_EQ(sha256_file(dir / "f.bin"), expected);
  EXPECT_THROW(sha256_file(dir / "missing.bin"), std::runtime_error);
}

// ------------------------------------------------------------------ naming

TEST(CheckpointNaming, HuggingFaceLlamaNames) {
  const std::pair<const char*, const char*> cases[] = {
      {"embed_tokens.weight", "model.embed_tokens.weight"},
      {"position.weight", "model.embed_positions.weight"},
      {"layers.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
      {"layers.0.attn_norm.bias", "model.layers.0.input_layernorm.bias"},
      {"layers.11.attention.q_proj.weight", "model.layers.11.self_attn.q_proj.weight"},
      {"layers.1.attention.o_proj.bias", "model.layers.1.self_attn.o_proj.bias"},
      {"layers.2.attention.k_norm.weight", "model.layers.2.self_attn.k_norm.weight"},
      {"layers.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"},
      {"layers.3.ffn.gate_proj.weight", "model.layers.3.mlp.gate_proj.weight"},
      {"layers.3.ffn.down_proj.bias", "model.layers.3.mlp.down_proj.bias"},
      {"norm.weight", "model.norm.weight"},
      {"norm.bias", "model.norm.bias"},
      {"lm_head.weight", "lm_head.weight"},
  };
  for (auto [ours, hf] : cases) {
    EXPECT_EQ(checkpoint_tensor_name(ours), hf);
    EXPECT_EQ(internal_tensor_name(hf).value_or("<none>"), ours);
  }
  // Names the writer never produces are not silently accepted.
  EXPECT_FALSE(internal_tensor_name("layers.0.attention.q_proj.weight"));
  EXPECT_FALSE(internal_tensor_name("model.layers.0.attention.q_proj.weight"));
  EXPECT_FALSE(internal_tensor_name("model.position.weight"));
  EXPECT_FALSE(internal_tensor_name("transformer.wte.weight"));
}

TEST(CheckpointNaming, EveryPresetParameterMapsToAUniqueNameAndBack) {
  std::vector<ModelConfig> configs;
  for (const std::string& name : preset_names()) configs.push_back(load_preset(name).model);
  ASSERT_GE(configs.size(), 4u);
  // Variants the presets do not cover: untied head, QK-norm, per-layer blocks.
  ModelConfig untied = tiny_model();
  untied.tie_embeddings = false;
  configs.push_back(untied);
  ModelConfig qk = tiny_model(true);
  qk.block.qk_norm = true;
  configs.push_back(qk);
  ModelConfig mixed = tiny_model(true);
  mixed.block_configs = {mixed.block, tiny_model().block};
  mixed.block_configs[1].position = "rope";
  configs.push_back(mixed);
  for (const ModelConfig& c : configs) {
    LanguageModel m(c);
    std::set<std::string> names;
    for (auto& [name, p] : m.named_parameters()) {
      const std::string file_name = checkpoint_tensor_name(name);
      EXPECT_TRUE(names.insert(file_name).second) << c.name << ": duplicate " << file_name;
      EXPECT_EQ(internal_tensor_name(file_name).value_or("<none>"), name) << c.name;
      EXPECT_TRUE(file_name.rfind("model.", 0) == 0 || file_name == "lm_head.weight") << file_name;
    }
  }
}

// ------------------------------------------------------------------ save / load

TEST(Checkpoint, RoundTripUsesHuggingFaceNames) {
  TempDir dir;
  for (bool llama : {false, true}) {
    ModelConfig c = tiny_model(llama);
    auto a = init_model(c, 1);
    CharTokenizer tok = CharTokenizer::from_text(kVocab);
    const std::string d = dir / (llama ? "llama" : "gpt");
    save_checkpoint(d, *a, TrainConfig{}, tok);
    SafetensorsFile f = read_safetensors(d + "/model.safetensors");
    EXPECT_TRUE(f.tensors.count("model.embed_tokens.weight"));
    EXPECT_TRUE(f.tensors.count("model.layers.1.self_attn.q_proj.weight"));
    EXPECT_TRUE(f.tensors.count("model.layers.0.mlp.down_proj.weight"));
    EXPECT_TRUE(f.tensors.count("model.layers.0.input_layernorm.weight"));
    EXPECT_TRUE(f.tensors.count("model.layers.0.post_attention_layernorm.weight"));
    EXPECT_TRUE(f.tensors.count("model.norm.weight"));
    EXPECT_EQ(f.tensors.count("model.embed_positions.weight"), llama ? 0u : 1u);
    EXPECT_EQ(f.tensors.count("model.layers.0.mlp.gate_proj.weight"), llama ? 1u : 0u);
    EXPECT_FALSE(f.tensors.count("lm_head.weight"));  // tied: stored once, as the embedding

    CheckpointInfo info = read_checkpoint_info(d);
    EXPECT_EQ(info.model, c);
    EXPECT_EQ(info.version, kCheckpointVersion);
    EXPECT_EQ(tokenizer_from_json(info.tokenizer)->vocab_size(), 40);
    auto b = init_model(info.model, 2);
    EXPECT_NE(flat_weights(*a), flat_weights(*b));
    load_model_weights(d, *b);
    EXPECT_EQ(flat_weights(*a), flat_weights(*b));
  }
}

TEST(Checkpoint, ReadsVersionOneInternalNames) {
  TempDir dir;
  auto a = init_model(tiny_model(), 3);
  CharTokenizer tok = CharTokenizer::from_text(kVocab);
  save_checkpoint(dir / "c", *a, TrainConfig{}, tok);
  std::vector<TensorView> views;
  for (auto& [name, p] : a->named_parameters()) {
    TensorView t{name, {}, p->data()};
    for (int i = 0; i < p->shape().rank; ++i) t.shape.push_back(p->shape()[i]);
    views.push_back(t);
  }
  write_safetensors(dir / "c/model.safetensors", views, {{"format", "blocklab"}});
  auto b = init_model(tiny_model(), 4);
  load_model_weights(dir / "c", *b);
  EXPECT_EQ(flat_weights(*a), flat_weights(*b));
}

TEST(Checkpoint, SaveReplacesAtomicallyAndLeavesNoTemporaries) {
  TempDir dir;
  CharTokenizer tok = CharTokenizer::from_text(kVocab);
  auto a = init_model(tiny_model(), 1);
  auto b = init_model(tiny_model(), 2);
  const std::string d = dir / "ckpt";
  fs::create_directories(d + ".tmp");  // left over by a crash mid-save
  write_bytes(d + ".tmp/model.safetensors", "partial");
  save_checkpoint(d, *a, TrainConfig{}, tok);
  save_checkpoint(d, *b, TrainConfig{}, tok);
  EXPECT_FALSE(fs::exists(d + ".tmp"));
  EXPECT_FALSE(fs::exists(d + ".old"));
  auto c = init_model(tiny_model(), 3);
  load_model_weights(d, *c);
  EXPECT_EQ(flat_weights(*b), flat_weights(*c));
}

// ------------------------------------------------------------------ bad input

class BadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = init_model(tiny_model(), 5);
    tok_ = std::make_unique<CharTokenizer>(CharTokenizer::from_text(kVocab));
    std::string text;
    for (int i = 0; i < 200; ++i)
      text += "the quick brown fox jumps over the lazy dog ABCDEFGHIJKLM ";
    data_ = std::make_unique<TextDataset>(text, *tok_);
    train_.batch_size = 2;
    train_.seq_len = 16;
    train_.max_steps = 3;
    train_.warmup_steps = 1;
    train_.eval_interval = 0;
    train_.eval_batches = 1;
    train_.threads = 1;
    Trainer t(*model_, train_, *data_);
    t.train();
    state_ = t.optimizer().state();
    save_checkpoint(dir_ / "c", *model_, train_, *tok_, &t);
    ck_ = dir_ / "c";
  }
  TempDir dir_;
  std::unique_ptr<LanguageModel> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<TextDataset> data_;
  TrainConfig train_;
  NamedBuffers state_;  // optimizer state at save time
  std::string ck_;
};

TEST_F(BadCheckpoint, GoodOneLoadsIncludingTrainerState) {
  auto m = init_model(tiny_model(), 9);
  load_model_weights(ck_, *m);
  Trainer t(*m, train_, *data_);
  load_trainer_state(ck_, t);
  EXPECT_EQ(t.step(), 3);
  EXPECT_EQ(t.optimizer().steps_taken(), 3);
  // Optimizer state uses the same tensor names as the weights.
  SafetensorsFile opt = read_safetensors(ck_ + "/optimizer.safetensors");
  EXPECT_TRUE(opt.tensors.count("model.layers.0.self_attn.q_proj.weight.exp_avg"));
  EXPECT_TRUE(opt.tensors.count("model.embed_tokens.weight.exp_avg_sq"));
  EXPECT_TRUE(opt.tensors.count("model.norm.bias.step"));
  // And it restores exactly (names mapped back to the internal ones).
  EXPECT_EQ(t.optimizer().state(), state_);
}

TEST_F(BadCheckpoint, TruncatedWeightsNameTheFile) {
  const std::string f = ck_ + "/model.safetensors";
  const std::string bytes = read_bytes(f);
  auto m = init_model(tiny_model(), 9);
  const std::vector<float> before = flat_weights(*m);
  for (size_t keep : {size_t(0), size_t(5), size_t(40), bytes.size() / 2, bytes.size() - 1}) {
    write_bytes(f, bytes.substr(0, keep));
    expect_error([&] { load_model_weights(ck_, *m); }, {f});
  }
  EXPECT_EQ(flat_weights(*m), before);  // nothing was half-loaded
}

TEST_F(BadCheckpoint, CorruptHeaderNamesTheFile) {
  const std::string f = ck_ + "/model.safetensors";
  std::string bytes = read_bytes(f);
  for (size_t i = 8; i < 40; ++i) bytes[i] = '#';
  write_bytes(f, bytes);
  auto m = init_model(tiny_model(), 9);
  expect_error([&] { load_model_weights(ck_, *m); }, {f});
}

TEST_F(BadCheckpoint, ShapesThatDoNotFitTheConfig) {
  ModelConfig wider = tiny_model();
  wider.block.d_model = 48;
  wider.block.d_ff = 96;
  auto m = init_model(wider, 9);
  const std::vector<float> before = flat_weights(*m);
  expect_error([&] { load_model_weights(ck_, *m); },
               {ck_ + "/model.safetensors", "model.embed_tokens.weight", "(40, 32)", "(40, 48)"});
  EXPECT_EQ(flat_weights(*m), before);

  ModelConfig deeper = tiny_model();
  deeper.n_layers = 3;
  auto d = init_model(deeper, 9);
  expect_error([&] { load_model_weights(ck_, *d); },
               {"model.safetensors", "'model.layers.2.", "is missing"});

  ModelConfig shallower = tiny_model();
  shallower.n_layers = 1;
  auto s = init_model(shallower, 9);
  expect_error([&] { load_model_weights(ck_, *s); },
               {"model.safetensors", "unexpected tensor 'model.layers.1."});
}

TEST_F(BadCheckpoint, MissingOrCorruptMetadata) {
  fs::remove(ck_ + "/checkpoint.json");
  expect_error([&] { read_checkpoint_info(ck_); }, {ck_ + "/checkpoint.json"});
  expect_error([&] { read_checkpoint_info(dir_ / "nowhere"); }, {dir_ / "nowhere"});
  write_bytes(ck_ + "/checkpoint.json", "{\"format\": \"blocklab-checkpoint\", ");
  expect_error([&] { read_checkpoint_info(ck_); }, {ck_ + "/checkpoint.json", "not valid JSON"});
  write_bytes(ck_ + "/checkpoint.json", "[1, 2, 3]");
  expect_error([&] { read_checkpoint_info(ck_); },
               {"checkpoint.json", "not a Blocklab checkpoint"});
  write_bytes(
      ck_ + "/checkpoint.json",
      R"({"format": "blocklab-checkpoint", "version": 2, "model": {"block": {"d_model": "wide"}},
                  "train": {}, "tokenizer": {}, "step": 1})");
  expect_error([&] { read_checkpoint_info(ck_); }, {"checkpoint.json", "block.d_model"});
  write_bytes(
      ck_ + "/checkpoint.json",
      R"({"format": "blocklab-checkpoint", "version": 99, "model": {}, "train": {}, "tokenizer": {}, "step": 1})");
  expect_error([&] { read_checkpoint_info(ck_); }, {"checkpoint.json", "version 99"});
  write_bytes(ck_ + "/checkpoint.json",
              R"({"format": "blocklab-checkpoint", "model": {}, "train": {}})");
  expect_error([&] { read_checkpoint_info(ck_); }, {"checkpoint.json", "missing \"tokenizer\""});
}

TEST_F(BadCheckpoint, BadTrainerState) {
  auto m = init_model(tiny_model(), 9);
  // Optimizer state file missing or truncated.
  const std::string opt = ck_ + "/optimizer.safetensors";
  const std::string bytes = read_bytes(opt);
  fs::remove(opt);
  {
    Trainer t(*m, train_, *data_);
    expect_error([&] { load_trainer_state(ck_, t); }, {opt});
  }
  write_bytes(opt, bytes.substr(0, bytes.size() - 4));
  {
    Trainer t(*m, train_, *data_);
    expect_error([&] { load_trainer_state(ck_, t); }, {opt});
  }
  write_bytes(opt, bytes);
  // A different optimizer than the one that wrote the state.
  {
    TrainConfig sgd = train_;
    sgd.optimizer = "sgd";
    Trainer t(*m, sgd, *data_);
    expect_error([&] { load_trainer_state(ck_, t); }, {"checkpoint.json", "'adamw'", "'sgd'"});
  }
  // Optimizer buffers that do not fit the model.
  {
    ModelConfig wider = tiny_model();
    wider.block.d_ff = 96;
    auto w = init_model(wider, 9);
    Trainer t(*w, train_, *data_);
    expect_error([&] { load_trainer_state(ck_, t); }, {opt, "floats"});
    EXPECT_EQ(t.step(), 0);
  }
  // Corrupt RNG state in checkpoint.json.
  nlohmann::json j = nlohmann::json::parse(read_bytes(ck_ + "/checkpoint.json"));
  j["trainer"]["sampler_rng"] = {"1", "x", "3", "4"};
  write_bytes(ck_ + "/checkpoint.json", j.dump());
  {
    Trainer t(*m, train_, *data_);
    expect_error([&] { load_trainer_state(ck_, t); }, {"checkpoint.json", "sampler RNG"});
  }
}

TEST_F(BadCheckpoint, InferenceOnlyCheckpointCannotResume) {
  save_checkpoint(dir_ / "inf", *model_, train_, *tok_);
  EXPECT_FALSE(fs::exists(dir_ / "inf/optimizer.safetensors"));
  Trainer t(*model_, train_, *data_);
  expect_error([&] { load_trainer_state(dir_ / "inf", t); },
               {"checkpoint.json", "no trainer state"});
}

TEST_F(BadCheckpoint, UnwritableLocationIsAClearError) {
  // A directory that cannot be created (a file is in the way; works as root too).
  write_bytes(dir_ / "file", "x");
  expect_error([&] { save_checkpoint(dir_ / "file/c", *model_, train_, *tok_); },
               {dir_ / "file/c"});
  if (geteuid() != 0) {  // root ignores permissions
    fs::create_directories(dir_ / "ro");
    fs::permissions(dir_ / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    expect_error([&] { save_checkpoint(dir_ / "ro/c", *model_, train_, *tok_); }, {dir_ / "ro/c"});
    fs::permissions(dir_ / "ro", fs::perms::owner_all);
  }
}

}  // namespace
}  // namespace bl
