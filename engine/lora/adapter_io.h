// LoRA adapters on disk, without the base model.
//
// PEFT layout (a directory, as Hugging Face PEFT's save_pretrained writes it):
//   adapter_model.safetensors  "base_model.model.<HF module path>.lora_A.weight" (r, in)
//                              and ".lora_B.weight" (out, r), float32, e.g.
//                              base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
//                              (module paths mapped as in checkpoints: attention ->
//                              self_attn, ffn -> mlp; train/checkpoint.h)
//   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "target_modules",
//                              "rank_pattern", "alpha_pattern", ...}; rank_pattern /
//                              alpha_pattern key layers whose rank / alpha differ from
//                              r / lora_alpha. Read as PEFT does: a pattern key matches
//                              a module whose name ends in it (as a regex, at a dot);
//                              a string target_modules is a regex every adapted module
//                              must fully match, a list names module suffixes;
//                              use_rslora scales by alpha / sqrt(r) (kept by storing
//                              alpha * sqrt(r)); fan_in_fan_out only concerns the HF
//                              base's Conv1D weight layout (A and B keep their shapes).
//                              DoRA, modules_to_save and bias adapters are refused
//                              naming the key. Written with PEFT's keys only and
//                              base_model_name_or_path = Adapter::base_model.
// GGUF, llama.cpp's layout (the default; docs/gguf.md): general.architecture
//   "llama", general.type "adapter", adapter.type "lora", adapter.lora.alpha (f32),
//   tensors "blk.N.attn_q.weight.lora_a" (GGML ne = [in, r], i.e. row-major
//   (r, in)) and ".lora_b" (ne = [r, out]) as F32, named as llama.cpp names the
//   base tensor (export/llama_gguf_names.h); q/k lora_b rows in llama.cpp's
//   rotary order. Only for models llama.cpp's llama architecture can run.
//   llama.cpp has one alpha per file: a layer whose alpha differs carries
//   alpha_layer / alpha in its B. Also written: llama.attention.head_count(_kv),
//   so the rows can be put back without the base. F16 tensors are read too.
// GGUF, Blocklab's own older layout (still read; written on request for models
//   llama.cpp cannot run): tensors "lora.<module path>.weight_a" (r, in) and
//   ".weight_b" (out, r) as F32; metadata "lora.rank" (u32), "lora.alpha" (f32),
//   per-layer "lora.<module path>.alpha" where it differs.
// Module paths are ours ("layers.0.attention.q_proj").
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/module.h"

namespace bl {

/// An adapter file is malformed or does not fit the model; what() names the
/// file or tensor and the problem.
class AdapterError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct AdapterLayer {
  int64_t rank = 0, in = 0, out = 0;
  float alpha = 0;
  std::vector<float> a, b;  // (rank, in), (out, rank)
  float scaling() const { return alpha / float(rank); }
};

struct Adapter {
  int64_t rank = 0;                            // the usual rank (PEFT "r")
  float alpha = 0;                             // the usual alpha ("lora_alpha")
  std::vector<std::string> target_modules;     // Linear names, e.g. "q_proj"
  std::map<std::string, AdapterLayer> layers;  // module path -> weights
  std::string base_model;                      // PEFT's base_model_name_or_path ("" = unknown)
};

/// Copies the adapters attached to the model's Linear layers.
Adapter extract_adapter(Module& model);
/// Attaches `ad` to the model: layers without an adapter get one (the base is
/// frozen as in apply_lora), layers with one must have the same rank; then copies
/// A and B. Every layer is checked before anything changes: an unknown module,
/// wrong rank or shape throws AdapterError naming the tensor.
void attach_adapter(Module& model, const Adapter& ad);

/// PEFT tensor name of a module path's A or B: which = "lora_A" / "lora_B".
std::string peft_tensor_name(const std::string& module_path, const std::string& which);

void write_peft_adapter(const std::string& dir, const Adapter& ad);
Adapter read_peft_adapter(const std::string& dir);
/// llama.cpp's layout for an adapter of a model with config `base`; AdapterError
/// naming the component when llama.cpp's llama architecture cannot run `base`.
void write_gguf_adapter(const std::string& path, const Adapter& ad, const ModelConfig& base);
/// Blocklab's older layout (any model).
void write_gguf_adapter_legacy(const std::string& path, const Adapter& ad);
/// Either layout. `base` (optional) is the model the adapter is for: it
/// supplies the head counts for q/k rows when the file has none, and must
/// agree with the file's when it has them.
Adapter read_gguf_adapter(const std::string& path, const ModelConfig* base = nullptr);

enum class GgufLayout { kLlamaCpp, kBlocklab };
/// True when `path` is a readable GGUF adapter in Blocklab's older layout.
bool is_blocklab_layout_gguf(const std::string& path);

/// By path: "*.gguf" is a GGUF file (in `layout`), anything else a PEFT
/// directory. base_model names the base for PEFT's base_model_name_or_path.
void save_adapter(const std::string& path, Module& model, const std::string& base_model = "",
                  GgufLayout layout = GgufLayout::kLlamaCpp);
Adapter read_adapter(const std::string& path, const ModelConfig* base = nullptr);
/// read_adapter + attach_adapter.
void load_adapter(const std::string& path, Module& model);

}  // namespace bl
