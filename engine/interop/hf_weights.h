// Blocklab parameters <-> Hugging Face tensors of one family (hf_config.h):
// names, shapes and layout. LLaMA-like families use the checkpoint names
// (train/checkpoint.h), which are already HF Llama's; Mixtral splits the
// stacked experts into block_sparse_moe.experts.E.w1/w2/w3; GPT-2 transposes
// every Conv1D weight to [in, out] and fuses q/k/v into attn.c_attn.
// One table (hf_links) drives both directions, so export and import agree.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/model.h"
#include "interop/hf_config.h"
#include "io/safetensors.h"

namespace bl {

/// One HF tensor built from the model, float32 values (the writer rounds).
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

/// The model's weights as HF tensors of `family`, in parameter order (tied
/// weights once, as HF stores them). Throws HfError for a parameter the
/// family has no tensor for (e.g. a quantized or adapted model).
std::vector<HfTensor> hf_tensors_from_model(LanguageModel& model, HfFamily family);

/// Copies HF tensors into the model. Every parameter must be found with the
/// exact HF shape and no unknown tensor may be present (HF's non-weight
/// buffers such as GPT-2's attn.bias mask are skipped); errors name `what`,
/// the tensor and both shapes. On error the model is unchanged.
void load_hf_tensors(const std::map<std::string, LoadedTensor>& tensors, LanguageModel& model,
                     HfFamily family, const std::string& what);

}  // namespace bl
