// Hugging Face folders through blocklab-cli: train a tiny LLaMA and a tiny
// GPT, `export hf` them (by directory and by run id), `models import hf` the
// folder, LoRA fine-tune straight from the folder (`train --init-from DIR`),
// and clear refusals for what cannot be mapped.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "temp_files.h"

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::run_cli;

const std::string kSmall =
    " --set model.n_layers=1 --set model.block.d_model=64 --set model.block.d_ff=128 "
    "--batch-size 2 --seq-len 32 --threads 1 --warmup 0 --quiet";

TEST(CliHf, ExportImportAndLoraFromAnHfFolder) {
  test::TempDir tmp;
  const std::string d = tmp.path(), db = " --db " + d + "/db.sqlite";
  auto r = run_cli("train --preset llama-tiny --tokenizer byte --steps 2" + kSmall + db +
                   " --out " + d + "/base");
  ASSERT_EQ(r.exit_code, 0) << r.out;

  r = run_cli("export hf " + d + "/base --out " + d + "/hf --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("LlamaForCausalLM"), std::string::npos) << r.out;
  for (const char* f :
       {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(d + "/hf/" + f)) << f;
  const nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(d + "/hf/config.json"));
  EXPECT_EQ(cfg["model_type"], "llama");
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  EXPECT_EQ(cfg["hidden_size"], 64);
  EXPECT_EQ(cfg["num_hidden_layers"], 1);

  // By run id: the run's newest checkpoint.
  r = run_cli("export hf 1" + db + " --out " + d + "/hf_run");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(fs::exists(d + "/hf_run/model.safetensors"));

  r = run_cli("models import hf " + d + "/hf --out " + d + "/imported");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(fs::exists(d + "/imported/checkpoint.json"));
  r = run_cli("sample --run " + d + "/imported --tokens 4 --seed 1");
  EXPECT_EQ(r.exit_code, 0) << r.out;

  // LoRA straight from the folder: imported once, reused the second time.
  const std::string lora = "train --init-from " + d +
                           "/hf --lora rank=4,alpha=8,targets=q,v --steps 3 --warmup 0 "
                           "--batch-size 2 --seq-len 32 --threads 1 --json" +
                           db + " --adapter-out ";
  r = run_cli(lora + d + "/ad1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("imported Hugging Face llama folder"), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["steps"], 3);
  EXPECT_EQ(j["trainable_params"], 4 * (64 + 64) + 4 * (64 + 32));  // q 64->64, v 64->2*16
  EXPECT_TRUE(fs::exists(d + "/ad1/adapter_model.safetensors"));
  r = run_cli(lora + d + "/ad2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("imported earlier"), std::string::npos) << r.out;
}

TEST(CliHf, GptExportAndRefusals) {
  test::TempDir tmp;
  const std::string d = tmp.path(), db = " --db " + d + "/db.sqlite";
  auto r = run_cli("train --preset gpt-tiny --steps 1" + kSmall + db + " --out " + d + "/gpt");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = run_cli("export hf " + d + "/gpt --out " + d + "/hf");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("GPT2LMHeadModel"), std::string::npos);
  // A char tokenizer has no HF form: no tokenizer.json, and the output says so.
  EXPECT_NE(r.out.find("no tokenizer.json"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d + "/hf/tokenizer.json"));
  const nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(d + "/hf/config.json"));
  EXPECT_EQ(cfg["activation_function"], "gelu");
  EXPECT_EQ(cfg["n_embd"], 64);

  // ALiBi: no HF family computes it.
  r = run_cli("train --preset gpt-tiny --steps 1 --set model.block.position=alibi" + kSmall + db +
              " --out " + d + "/alibi");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = run_cli("export hf " + d + "/alibi --out " + d + "/hf2");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("position 'alibi'"), std::string::npos) << r.out;

  // An HF config with a field Blocklab cannot compute: the field is named.
  nlohmann::json bad = cfg;
  bad["activation_function"] = "gelu_fast";  // another tanh form, not computed exactly
  std::ofstream(d + "/hf/config.json") << bad.dump();
  r = run_cli("models import hf " + d + "/hf --out " + d + "/x");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("'activation_function'"), std::string::npos) << r.out;
  r = run_cli("export hf " + d + "/gpt");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  r = run_cli("export onnx " + d + "/gpt --out " + d + "/y");
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

}  // namespace
}  // namespace bl
