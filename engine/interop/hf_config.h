// Hugging Face config.json <-> ModelConfig for the model families whose HF
// layout Blocklab computes exactly (docs/huggingface.md): GPT-2, LLaMA,
// Mistral, Qwen2, Qwen3, Gemma (1) and Mixtral. Everything else (Gemma 2/3,
// unknown families, and any field whose value would change the function:
// rope_scaling, an unknown activation, ...) is refused with an HfError naming
// the family or the field, never silently approximated.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/config.h"

namespace bl {

/// An HF folder or config cannot be mapped exactly. what() names the file,
/// the family or field and why.
class HfError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class HfFamily { kGpt2, kLlama, kMistral, kQwen2, kQwen3, kGemma, kMixtral };

/// "gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "mixtral" (config.json "model_type").
std::string hf_model_type(HfFamily f);
/// "GPT2LMHeadModel", "LlamaForCausalLM", ... (config.json "architectures").
std::string hf_architecture(HfFamily f);

/// A config.json mapped to Blocklab: the family and the exact ModelConfig.
struct HfModelConfig {
  HfFamily family = HfFamily::kLlama;
  ModelConfig model;
};

/// Maps a parsed config.json. `what` (the file) prefixes every error. Throws
/// HfError naming the family (unsupported model_type) or the field (missing,
/// wrong type, or a value Blocklab cannot compute exactly; unknown fields are
/// refused too, since they might change the function).
HfModelConfig model_config_from_hf(const nlohmann::json& config, const std::string& what);

/// The family an exported model belongs to, and its config.json ("architectures",
/// "model_type", "torch_dtype" = `torch_dtype`, plus the family's fields). Throws
/// HfError naming the component or field when no HF family computes the same
/// function (e.g. ALiBi positions, post-norm, per-layer blocks, muP, an
/// attention kind HF has no class for).
HfModelConfig hf_family_of(const ModelConfig& m);
nlohmann::ordered_json hf_config_from_model(const ModelConfig& m, const std::string& torch_dtype);

}  // namespace bl
