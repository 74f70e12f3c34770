// A Hugging Face model folder: config.json + model.safetensors (or shards
// listed in model.safetensors.index.json) + tokenizer.json. Export writes one
// that `transformers` loads (AutoModelForCausalLM.from_pretrained); import
// reads one into a Blocklab model, and into a Blocklab checkpoint so every
// command that takes a checkpoint (fine-tuning, sampling, eval) can use it.
// Mapping rules and refusals: interop/hf_config.h, docs/huggingface.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/model.h"
#include "data/tokenizer.h"
#include "interop/hf_config.h"
#include "train/train_config.h"

namespace bl {

/// The Blocklab tokenizer record an export writes beside tokenizer.json: for a
/// char tokenizer it is the only exact description (HF has no equivalent), and
/// import prefers it so a round trip restores the same tokenizer type.
constexpr const char* kHfBlocklabTokenizerFile = "blocklab_tokenizer.json";

struct HfExportReport {
  HfFamily family = HfFamily::kLlama;
  std::vector<std::string> files;  // written, relative to the folder
  std::string tokenizer_note;      // how the tokenizer was written
};

/// Writes `dir` (created if needed; existing files of the same names are
/// replaced): config.json, model.safetensors in `dtype` ("f32", "bf16",
/// "f16"; rounded to nearest even), generation_config.json, and the tokenizer:
/// tokenizer.json for BPE and byte tokenizers (the byte one as a byte-level
/// BPE with 256 byte tokens and no merges: the same ids), plus
/// blocklab_tokenizer.json. Throws HfError for a model no HF family computes
/// exactly, std::invalid_argument for a bad dtype.
HfExportReport export_hf_folder(const std::string& dir, LanguageModel& model, const Tokenizer& tok,
                                const std::string& dtype);

struct HfImport {
  HfFamily family = HfFamily::kLlama;
  std::unique_ptr<LanguageModel> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the folder has none
  std::string tokenizer_file;            // which file it came from
};

/// Whether `dir` looks like an HF folder: it has config.json and no
/// checkpoint.json (a Blocklab checkpoint).
bool is_hf_folder(const std::string& dir);

/// Reads an HF folder. Throws HfError naming the file and field or tensor on
/// anything it cannot map exactly (hf_config.h), on missing, unexpected or
/// mis-shaped tensors, non-finite values and malformed files.
HfImport read_hf_folder(const std::string& dir);

/// The train config an imported model gets: defaults, with seq_len capped at
/// the model's context.
TrainConfig hf_import_train_config(const ModelConfig& m);

/// Reads an HF folder (which must have a tokenizer) and saves it as a Blocklab
/// checkpoint at `out_dir`. Returns the import (model and tokenizer).
HfImport import_hf_checkpoint(const std::string& hf_dir, const std::string& out_dir);

}  // namespace bl
