// A trained model as a llama.cpp GGUF file (architecture "llama"): the
// hyperparameter keys llama.cpp reads, the tokenizer as a GPT-2 style BPE
// vocabulary ("gpt2"), and the weights in F32 or F16 (norms always F32), named
// and ordered as export/llama_gguf_names.h says. Only models llama.cpp's llama
// architecture computes identically (llama_cpp_incompatibility). docs/gguf.md.
#pragma once

#include <stdexcept>
#include <string>

#include "core/model.h"
#include "data/tokenizer.h"
#include "io/gguf_writer.h"

namespace bl {

/// The model or tokenizer cannot be written for llama.cpp; what() says which part.
class GgufExportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct GgufExportOptions {
  GgmlType dtype = GgmlType::kF32;  // of the 2-D weights; 1-D norms stay F32
  std::string name;                 // general.name ("" = the model config's name)
};

/// What was written.
struct GgufExportSummary {
  size_t n_tensors = 0, n_kv = 0;
};

/// Writes `model` (no LoRA attached, not quantized) and `tok` to `path`.
GgufExportSummary export_llama_gguf(const std::string& path, LanguageModel& model,
                                    const Tokenizer& tok, const GgufExportOptions& opt = {});

/// The tokenizer.ggml.* keys for `tok` (also used by tests); returns the
/// number of GGUF tokens (the tokenizer's, plus an end-of-text control token
/// for a char tokenizer, which has none of its own).
int64_t add_llama_tokenizer_keys(GgufWriter& w, const Tokenizer& tok);

}  // namespace bl
