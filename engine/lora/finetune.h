// A LoRA / QLoRA fine-tune of a stored checkpoint, built the same way by the CLI
// (`train --init-from ... --lora ...`) and the GUI's training session: the base
// checkpoint fixes the model and tokenizer, its weights are loaded, optionally
// quantized (QLoRA), then adapters are attached and everything else is frozen.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model.h"
#include "data/tokenizer.h"
#include "quant/quantize.h"
#include "train/checkpoint.h"

namespace bl {

/// Adapter shape: rank, alpha and target roles / names / patterns (lora/lora.h).
struct LoraSpec {
  int64_t rank = 8;
  float alpha = 16.0f;
  std::vector<std::string> targets{"q", "v"};
  /// "r8 q,v" (as run lists show it).
  std::string str() const;
};

struct FinetuneSpec {
  std::string base_checkpoint;  // checkpoint directory (train/checkpoint.h)
  LoraSpec lora;
  std::string quantize;  // "" keeps a float base; else QuantSpec::parse text ("nf4", ...)
  uint64_t seed = 0;     // initialises the A matrices
  /// SHA-256 of the base's model.safetensors when the fine-tune began; when set,
  /// build_finetune refuses a base that changed since (an adapter fits one base).
  std::string base_sha256;
};

/// Parameter counts of a fine-tune: all weights of the base, the weights after
/// the adapters are attached, and the trainable ones (the adapters).
struct FinetuneCounts {
  int64_t base = 0;
  int64_t total = 0;
  int64_t trainable = 0;
  int64_t adapted_layers = 0;
};

struct Finetune {
  std::string base_checkpoint;
  std::string base_sha256;  // of the base's model.safetensors
  LoraSpec lora;
  uint64_t seed = 0;
  CheckpointInfo info;  // the base checkpoint's model / train config and tokenizer
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LanguageModel> model;  // base weights (quantized if asked) + adapters
  std::vector<std::string> lora_paths;   // adapted Linear paths
  std::string quant_name;                // QuantSpec::str(), "" for a float base
  QuantizeReport quant;
  FinetuneCounts counts;
  /// The run summary's "lora" block (CLI and GUI record the same one); it is
  /// also the spec of fine-tune checkpoints (finetune_spec_from_json reads it).
  nlohmann::json summary(const std::string& adapter_path) const;
};

/// Builds the fine-tune. Throws CheckpointError for an unusable checkpoint (or
/// one whose SHA-256 differs from spec.base_sha256) and std::invalid_argument
/// for a bad rank, target or quantization spec.
Finetune build_finetune(const FinetuneSpec& spec);

/// The spec recorded in a Finetune::summary block (a run's summary "lora", a
/// fine-tune checkpoint's "finetune"). Throws std::invalid_argument naming the
/// missing or malformed field. Blocks of older runs without "seed" or
/// "base_sha256" give seed 0 and no SHA-256 check.
FinetuneSpec finetune_spec_from_json(const nlohmann::json& block);

/// A fine-tune checkpoint (train/checkpoint.h) as a model: rebuilds the
/// fine-tune from its spec (the base must be unchanged) and loads its adapter
/// weights. Throws CheckpointError for a missing, changed or unusable base and
/// for a checkpoint that is not a fine-tune checkpoint.
Finetune load_finetune_checkpoint(const std::string& dir);

/// The counts build_finetune would report for a base model of this config,
/// computed on a model without storage (MetaParameterScope): cheap enough to
/// run on every edit. Quantization does not change them. Throws like apply_lora.
FinetuneCounts count_finetune(const ModelConfig& base, const LoraSpec& lora);

}  // namespace bl
