// Hugging Face folders from the command line (engine/interop/hf_folder.h):
//   export hf RUN|CKPT --out DIR [--dtype f32|bf16|f16] [--db FILE]
//   models import hf DIR [--name NAME] [--out CKPT] [--db FILE]
// and the import behind `train --init-from HF_DIR --lora ...`.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "args.h"
#include "commands.h"
#include "interop/hf_folder.h"
#include "io/sha256.h"
#include "setup.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"

namespace bl::cli {

namespace {

namespace fs = std::filesystem;

fs::path db_dir(const std::optional<std::string>& db) {
  const fs::path p = fs::absolute(db.value_or(default_db_path()));
  return p.parent_path();
}

}  // namespace

int export_hf_command(const std::vector<std::string>& argv) {
  Args args(argv, {"out", "dtype", "db"}, {});
  if (args.positional().size() != 1)
    throw UsageError("export hf needs one RUN (a run id) or CHECKPOINT directory");
  const auto out = args.get("out");
  if (!out) throw UsageError("export hf needs --out DIR (the Hugging Face folder to write)");
  const std::string dtype = args.get("dtype").value_or("f32");
  if (dtype != "f32" && dtype != "bf16" && dtype != "f16")
    throw UsageError("--dtype must be f32, bf16 or f16");
  const std::string& what = args.positional()[0];
  const std::string dir = export_source_checkpoint(args, what, "export hf");
  const CheckpointInfo info = read_checkpoint_info(dir);
  if (!info.finetune.is_null())
    throw std::runtime_error(dir +
                             " is a LoRA fine-tune checkpoint (adapter weights only): merge it "
                             "into its base first (blocklab-cli lora merge --base " +
                             info.finetune.value("base_checkpoint", std::string("BASE")) +
                             " --adapter ADAPTER --out DIR), then export DIR");
  std::unique_ptr<Tokenizer> tok = tokenizer_from_json(info.tokenizer);
  LanguageModel model(info.model);
  load_model_weights(dir, model);
  const HfExportReport r = export_hf_folder(*out, model, *tok, dtype);
  std::printf("exported %s (%s, %lld parameters, %s) to %s\n", dir.c_str(),
              hf_architecture(r.family).c_str(), (long long)model.num_parameters(), dtype.c_str(),
              out->c_str());
  std::printf("tokenizer: %s\n", r.tokenizer_note.c_str());
  return 0;
}

std::string hf_import_cache_dir(const std::string& hf_dir, const std::optional<std::string>& db) {
  // Keyed by the folder's bytes: the same folder imports once, a changed one again.
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(hf_dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string all;
  for (const fs::path& f : files)
    all += f.filename().string() + ":" + sha256_file(f.string()) + "\n";
  std::string name = fs::path(hf_dir).lexically_normal().filename().string();
  if (name.empty())
    name = fs::absolute(hf_dir).lexically_normal().parent_path().filename().string();
  return (db_dir(db) / "hf-imports" / (name + "-" + sha256_hex(all).substr(0, 12))).string();
}

std::string import_hf_for_finetune(const std::string& hf_dir,
                                   const std::optional<std::string>& db) {
  const std::string out = hf_import_cache_dir(hf_dir, db);
  std::error_code ec;
  if (fs::exists(fs::path(out) / "checkpoint.json", ec)) {
    verify_checkpoint(out, checkpoint_sha256(out));  // every file still matches its manifest
    std::fprintf(stderr, "using %s, imported earlier from Hugging Face folder %s\n", out.c_str(),
                 hf_dir.c_str());
    return out;
  }
  const HfImport in = import_hf_checkpoint(hf_dir, out);
  std::fprintf(stderr, "imported Hugging Face %s folder %s as checkpoint %s\n",
               hf_model_type(in.family).c_str(), hf_dir.c_str(), out.c_str());
  return out;
}

int models_import_command(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] != "hf")
    throw UsageError("models import needs a format: models import hf DIR [--name NAME]");
  Args args(std::vector<std::string>(argv.begin() + 1, argv.end()), {"name", "out", "db"}, {});
  if (args.positional().size() != 1)
    throw UsageError("models import hf needs one DIR (config.json + model.safetensors)");
  const std::string& dir = args.positional()[0];
  std::string name =
      args.get("name").value_or(fs::path(dir).lexically_normal().filename().string());
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
    throw UsageError("--name must be a plain name (no '/'), got '" + name + "'");
  if (args.get("out") && args.get("db")) throw UsageError("give --out or --db, not both");
  const std::string out =
      args.get("out").value_or((db_dir(args.get("db")) / "models" / name).string());
  const HfImport in = import_hf_checkpoint(dir, out);
  std::printf("imported %s (%s, %lld parameters, tokenizer from %s) as checkpoint %s\n",
              dir.c_str(), hf_architecture(in.family).c_str(),
              (long long)in.model->num_parameters(), fs::path(in.tokenizer_file).filename().c_str(),
              out.c_str());
  std::printf(
      "fine-tune it with: blocklab-cli train --init-from %s --lora rank=8,alpha=16 "
      "--adapter-out DIR --data FILE\n",
      out.c_str());
  return 0;
}

}  // namespace bl::cli
