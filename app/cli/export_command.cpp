// blocklab-cli export gguf RUN|CKPT --out FILE.gguf [--dtype f32|f16]: a
// checkpoint as a llama.cpp GGUF model (export/llama_gguf_export.h, docs/gguf.md).
#include <cstdio>
#include <filesystem>

#include "args.h"
#include "commands.h"
#include "export/llama_gguf_export.h"
#include "setup.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"

namespace bl::cli {

namespace {

int export_gguf(const std::vector<std::string>& rest) {
  Args args(rest, {"out", "dtype", "db", "name"}, {});
  if (args.positional().size() != 1)
    throw UsageError(
        "export gguf needs one RUN (a run id: its newest checkpoint) or CHECKPOINT directory");
  const std::string what = args.positional()[0];
  const auto out = args.get("out");
  if (!out) throw UsageError("export gguf needs --out FILE.gguf");
  const std::string dtype = args.get("dtype").value_or("f32");
  if (dtype != "f32" && dtype != "f16") throw UsageError("--dtype must be f32 or f16");
  const std::string dir = export_source_checkpoint(args, what, "export gguf");
  const CheckpointInfo info = read_checkpoint_info(dir);
  if (!info.finetune.is_null())
    throw UsageError(dir +
                     " is a fine-tune checkpoint (adapter only): merge it into its base first "
                     "(lora merge --base BASE --adapter ADAPTER --out DIR), or export the adapter "
                     "(lora export --base BASE --adapter ADAPTER --out FILE.gguf)");
  std::unique_ptr<Tokenizer> tok = tokenizer_from_json(info.tokenizer);
  LanguageModel model(info.model);
  load_model_weights(dir, model);
  GgufExportOptions opt;
  opt.dtype = dtype == "f16" ? GgmlType::kF16 : GgmlType::kF32;
  opt.name = args.get("name").value_or("");
  const GgufExportSummary s = export_llama_gguf(*out, model, *tok, opt);
  std::printf("exported %s to %s: %zu tensors (%s), %zu metadata keys, llama architecture\n",
              dir.c_str(), out->c_str(), s.n_tensors, dtype.c_str(), s.n_kv);
  return 0;
}

}  // namespace

int export_command(const std::vector<std::string>& argv) {
  if (argv.empty() || (argv[0] != "gguf" && argv[0] != "hf"))
    throw UsageError(
        "export gguf RUN|CHECKPOINT --out FILE.gguf [--dtype f32|f16] | export hf RUN|CHECKPOINT "
        "--out DIR [--dtype f32|bf16|f16]");
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  return argv[0] == "hf" ? export_hf_command(rest) : export_gguf(rest);
}

}  // namespace bl::cli
