// What llama.cpp's "llama" architecture can run, and how Blocklab's tensors map
// onto its GGUF names (gguf-py MODEL_TENSOR names, docs/gguf.md):
//   embed_tokens.weight                -> token_embd.weight
//   layers.N.attn_norm.weight          -> blk.N.attn_norm.weight
//   layers.N.attention.{q,k,v,o}_proj  -> blk.N.attn_{q,k,v,output}.weight
//   layers.N.ffn_norm.weight           -> blk.N.ffn_norm.weight
//   layers.N.ffn.{gate,up,down}_proj   -> blk.N.ffn_{gate,up,down}.weight
//   norm.weight                        -> output_norm.weight
//   lm_head.weight (untied only)       -> output.weight
// Blocklab's RoPE rotates the pairs (i, i + head_dim/2) (rotate-half, HF
// Llama); llama.cpp's llama architecture rotates adjacent pairs (2i, 2i+1).
// So the rows of Q and K (and of LoRA B for q/k) are written permuted within
// each head, as llama.cpp's convert_hf_to_gguf.py does for HF Llama.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/config.h"

namespace bl {

/// "" when llama.cpp's llama architecture computes the same function as this
/// model; otherwise why not, naming the component (and layer), e.g.
/// "ffn 'standard' (layer 0): llama.cpp's llama architecture needs 'gated' (SwiGLU)".
std::string llama_cpp_incompatibility(const ModelConfig& m);

/// GGUF name of a Blocklab parameter name (internal, e.g.
/// "layers.0.attention.q_proj.weight" -> "blk.0.attn_q.weight"); nullopt when
/// llama's architecture has no such tensor.
std::optional<std::string> llama_gguf_tensor_name(const std::string& internal_name);
/// Inverse of llama_gguf_tensor_name; nullopt for other names.
std::optional<std::string> internal_from_llama_gguf(const std::string& gguf_name);

/// Which rotary permutation a tensor's rows need: n_heads for attn_q,
/// n_kv_heads for attn_k, 0 for every other tensor.
int64_t llama_rope_permute_heads(const std::string& internal_name, int64_t n_heads,
                                 int64_t n_kv_heads);

/// Permutes the rows of a row-major (rows, cols) matrix in place, per head
/// (rows = n_head * head_dim, head_dim even): to_gguf moves row h*hd + s*hd/2 + i
/// to h*hd + 2i + s (HF rotate-half -> llama.cpp adjacent pairs); !to_gguf undoes it.
void llama_rope_permute_rows(float* w, int64_t rows, int64_t cols, int64_t n_head, bool to_gguf);

}  // namespace bl
