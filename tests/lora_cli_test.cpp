// The LoRA / QLoRA workflow through blocklab-cli: fine-tune a checkpoint with
// --lora (over an NF4 base), export the adapter to GGUF and back, merge it into
// a plain checkpoint and sample from that; bad specs and adapters are clean errors.
// Fine-tunes run on 1 and on 2 threads (2: the data-parallel path).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::run_cli;

class LoraCli : public ::testing::TestWithParam<int> {};

TEST_P(LoraCli, FineTuneExportMergeSample) {
  const fs::path dir = fs::temp_directory_path() / ("bl_lora_cli_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string d = dir.string(), db = " --db " + d + "/db.sqlite";
  const std::string threads = " --threads " + std::to_string(GetParam());
  const std::string small =
      " --set model.n_layers=1 --set model.block.d_model=64 --set model.block.d_ff=128 "
      "--batch-size 2 "
      "--seq-len 32 --threads 1 --warmup 0 --quiet";
  auto r = run_cli("train --preset gpt-tiny --steps 3" + small + db + " --out " + d + "/base");
  ASSERT_EQ(r.exit_code, 0) << r.out;

  r = run_cli("train --init-from " + d +
              "/base --lora rank=4,alpha=8,targets=q,k,v,down --quantize nf4 --steps 4 --warmup 0 "
              "--batch-size 2 --seq-len 32 --json" +
              threads + db + " --adapter-out " + d + "/ad");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["parent_run_id"], nullptr);  // --out directories are not store checkpoints
  EXPECT_EQ(j["trainable_params"],
            4 * (64 + 64) * 3 + 4 * (128 + 64));  // q, k, v 64->64; down 128->64
  EXPECT_TRUE(fs::exists(d + "/ad/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(d + "/ad/adapter_config.json"));

  // By run id: the run's newest checkpoint, and the run becomes the parent.
  r = run_cli(
      "train --init-from 1 --lora rank=2 --steps 2 --warmup 0 --batch-size 2 --seq-len 32 "
      "--json" +
      threads + db + " --adapter-out " + d + "/ad2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  j = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(j["parent_run_id"], 1);
  EXPECT_EQ(j["trainable_params"], 2 * 2 * (64 + 64));  // default targets q, v
  EXPECT_TRUE(fs::exists(d + "/ad2/adapter_model.safetensors"));
  // A .gguf adapter is written for llama.cpp, which has no GPT-style blocks:
  // refused before training, naming the part.
  r = run_cli("train --init-from 1 --lora rank=2 --steps 2 --adapter-out " + d + "/x.gguf" + db);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("llama.cpp, which cannot run this base: ffn 'standard' (layer 0)"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));

  r = run_cli("lora export --adapter " + d + "/ad --out " + d + "/ad.gguf");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("needs the base model: add --base CHECKPOINT"), std::string::npos) << r.out;
  r = run_cli("lora export --adapter " + d + "/ad --base " + d + "/base --out " + d + "/ad.gguf");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("ffn 'standard' (layer 0)"), std::string::npos) << r.out;
  r = run_cli("lora export --adapter " + d + "/ad --gguf-layout blocklab --out " + d + "/ad.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("exported 4 adapted layers (rank 4, alpha 8)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(Blocklab layout)"), std::string::npos) << r.out;
  r = run_cli("lora export --adapter " + d + "/ad2 --gguf-layout blocklab --out " + d +
              "/ad2.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = run_cli("lora merge --base " + d + "/base --adapter " + d + "/ad.gguf --out " + d +
              "/merged");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = run_cli("sample --run " + d + "/merged --tokens 5 --seed 1");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  // Several adapters (and the base) in one batch, one row each.
  r = run_cli("lora sample --base " + d + "/base --adapter " + d + "/ad --adapter base --adapter " +
              d + "/ad2.gguf --prompt the --tokens 6 --temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("--- " + d + "/ad\nthe"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--- base\nthe"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--- " + d + "/ad2.gguf\nthe"), std::string::npos) << r.out;

  // Errors: a bad --lora key, a target the model lacks, an adapter of another shape.
  r = run_cli("train --init-from " + d + "/base --lora rank=4,beta=2 --adapter-out " + d + "/x" +
              db);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown key 'beta'"), std::string::npos) << r.out;
  r = run_cli("train --init-from " + d +
              "/base --lora targets=gate --steps 1 --warmup 0 --adapter-out " + d + "/x" + db);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("LoRA target 'gate' matches no Linear layer"), std::string::npos) << r.out;
  r = run_cli(
      "train --preset gpt-tiny --steps 1 --warmup 0 --set model.n_layers=1 --batch-size 2 "
      "--seq-len 32 "
      "--quiet" +
      db + " --out " + d + "/wide");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = run_cli("lora merge --base " + d + "/wide --adapter " + d + "/ad --out " + d + "/m2");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight' has shape "
                       "[4, 64] but layer 'layers.0.attention.k_proj' needs [4, 128]"),
            std::string::npos)
      << r.out;
  // --init-from alone says what a fine-tune needs, not just one missing option.
  r = run_cli("train --init-from 1" + db);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--init-from 1 starts a LoRA fine-tune of that base: it needs --lora "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("and --adapter-out PATH"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Threads, LoraCli, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "threads"; });

}  // namespace
}  // namespace bl
