// blocklab-cli export gguf and lora export in llama.cpp's layout, end to end
// on a small LLaMA-style checkpoint, and their refusals.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_support.h"
#include "export/llama_gguf_names.h"
#include "io/float16.h"
#include "io/gguf_reader.h"
#include "lora/adapter_io.h"
#include "lora/lora.h"
#include "peft_test_util.h"
#include "temp_files.h"
#include "train/checkpoint.h"

namespace bl {
namespace {

using test::run_cli;
using test::TempDir;

TEST(CliGguf, ExportsACheckpointAndAnAdapterForLlamaCpp) {
  TempDir dir;
  ModelConfig cfg = test::peft_model_config(false);
  cfg.vocab_size = 256;
  cfg.name = "cli-llama";
  LanguageModel m(cfg);
  test::init_model(m, 4);
  ByteTokenizer tok;
  save_checkpoint(dir / "base", m, TrainConfig{}, tok);

  auto r = run_cli("export gguf " + (dir / "base") + " --out " + (dir / "m.gguf") + " --dtype f16");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("21 tensors (f16)"), std::string::npos) << r.out;
  const GgufFile f = GgufFile::read(dir / "m.gguf");
  EXPECT_EQ(f.get_string("general.name"), "cli-llama");
  EXPECT_EQ(f.get_int("general.file_type"), 1);
  const GgufTensorInfo* q = f.tensor("blk.1.attn_q.weight");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->type, GgmlType::kF16);
  Parameter* wq = nullptr;
  for (auto& [n, p] : m.named_parameters())
    if (n == "layers.1.attention.q_proj.weight") wq = p;
  std::vector<float> want(wq->data(), wq->data() + wq->numel());
  llama_rope_permute_rows(want.data(), 64, 64, 4, true);
  for (float& v : want) v = half_to_float(float_to_half(v));
  EXPECT_EQ(f.tensor_data(*q), want);

  // A LoRA adapter (PEFT directory) -> llama.cpp GGUF with the base -> merged
  // back in: the same logits as the adapter attached directly.
  apply_lora(m, 4, 8.0f, {"q", "k", "v"}, 3);
  Rng rng(8);
  for (auto& [n, p] : lora_parameters(m))
    if (n.find("lora_B") != std::string::npos) p->init_normal(rng, 0.1f);
  save_adapter(dir / "peft", m);
  r = run_cli("lora export --adapter " + (dir / "peft") + " --base " + (dir / "base") + " --out " +
              (dir / "a.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("exported 6 adapted layers (rank 4, alpha 8)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(llama.cpp layout)"), std::string::npos) << r.out;
  const GgufFile a = GgufFile::read(dir / "a.gguf");
  EXPECT_EQ(a.get_string("general.architecture"), "llama");
  EXPECT_TRUE(a.tensor("blk.0.attn_k.weight.lora_b"));
  const Adapter direct = read_adapter(dir / "peft"), via = read_adapter(dir / "a.gguf");
  for (auto& [p, x] : direct.layers) {
    EXPECT_EQ(via.layers.at(p).a, x.a) << p;
    EXPECT_EQ(via.layers.at(p).b, x.b) << p;
  }
  r = run_cli("lora merge --base " + (dir / "base") + " --adapter " + (dir / "a.gguf") + " --out " +
              (dir / "merged"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  LanguageModel merged(cfg);
  load_model_weights(dir / "merged", merged);
  const std::vector<int32_t> ids = test::token_ids(2 * 6, 256);
  const double diff =
      test::max_abs_diff(test::logits_of(merged, ids, 2, 6), test::logits_of(m, ids, 2, 6));
  EXPECT_LT(diff, 1e-4);
  // ... and back to a PEFT directory without the base (the file has the head counts).
  r = run_cli("lora export --adapter " + (dir / "a.gguf") + " --out " + (dir / "peft2"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (auto& [p, x] : read_adapter(dir / "peft2").layers) EXPECT_EQ(x.b, direct.layers.at(p).b);

  // Refusals: a fine-tune-free GPT-style checkpoint, a bad --dtype, no --out.
  ModelConfig gpt = cfg;
  gpt.block.ffn = "standard";
  gpt.block.norm = "layer_norm";
  LanguageModel g(gpt);
  test::init_model(g);
  save_checkpoint(dir / "gpt", g, TrainConfig{}, tok);
  r = run_cli("export gguf " + (dir / "gpt") + " --out " + (dir / "g.gguf"));
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("llama.cpp cannot run this model: ffn 'standard' (layer 0)"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "g.gguf"));
  r = run_cli("export gguf " + (dir / "base") + " --out " + (dir / "x.gguf") + " --dtype q4");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--dtype must be f32 or f16"), std::string::npos) << r.out;
  r = run_cli("export gguf " + (dir / "base"));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  r = run_cli("export onnx " + (dir / "base"));
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

}  // namespace
}  // namespace bl
