#include "export/llama_gguf_names.h"

#include <cstring>
#include <stdexcept>
#include <vector>

namespace bl {

namespace {

// Blocklab module path inside a layer <-> llama.cpp's name inside blk.N.
constexpr std::pair<const char*, const char*> kLayerTensors[] = {
    {"attn_norm.weight", "attn_norm.weight"},          {"attention.q_proj.weight", "attn_q.weight"},
    {"attention.k_proj.weight", "attn_k.weight"},      {"attention.v_proj.weight", "attn_v.weight"},
    {"attention.o_proj.weight", "attn_output.weight"}, {"ffn_norm.weight", "ffn_norm.weight"},
    {"ffn.gate_proj.weight", "ffn_gate.weight"},       {"ffn.up_proj.weight", "ffn_up.weight"},
    {"ffn.down_proj.weight", "ffn_down.weight"},
};
constexpr std::pair<const char*, const char*> kGlobalTensors[] = {
    {"embed_tokens.weight", "token_embd.weight"},
    {"norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// "<prefix><digits>.<rest>" -> (digits, rest).
bool split_index(const std::string& s, const std::string& prefix, std::string& index,
                 std::string& rest) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t a = prefix.size(), b = s.find('.', a);
  if (b == std::string::npos || b == a || b - a > 6) return false;
  for (size_t i = a; i < b; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  if (b - a > 1 && s[a] == '0') return false;  // one spelling per index
  index = s.substr(a, b - a);
  rest = s.substr(b + 1);
  return true;
}

}  // namespace

std::string llama_cpp_incompatibility(const ModelConfig& m) {
  const auto need = [](const std::string& what, const std::string& have, int64_t layer,
                       const std::string& want) {
    return what + " '" + have + "' (layer " + std::to_string(layer) +
           "): llama.cpp's llama architecture needs " + want;
  };
  const BlockConfig first = m.get_block_config(0);
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const BlockConfig b = m.get_block_config(i);
    if (b.attention != "mha" && b.attention != "gqa")
      return need("attention", b.attention, i, "'mha' or 'gqa'");
    if (b.ffn != "gated") return need("ffn", b.ffn, i, "'gated' (SwiGLU)");
    if (b.norm != "rms_norm") return need("norm", b.norm, i, "'rms_norm'");
    if (b.position != "rope") return need("position", b.position, i, "'rope'");
    const std::string at = " (layer " + std::to_string(i) + ")";
    if (b.bias) return "block.bias = true" + at + ": the export writes bias-free Linear layers";
    if (b.qk_norm) return "qk_norm" + at + ": llama.cpp's llama architecture has no Q/K norm";
    if (b.mup) return "mup attention scale" + at + ": llama.cpp scales by 1/sqrt(head_dim)";
    if (b.qkv_bias) return "qkv_bias" + at + ": the export writes bias-free Linear layers";
    if (b.head_dim_override)
      return "head_dim" + at + ": the export writes head size d_model / n_heads";
    if (b.ffn_activation.value_or("silu") != "silu")
      return "ffn_activation '" + *b.ffn_activation + "'" + at +
             ": llama.cpp's llama FFN is SwiGLU (silu)";
    if (b.norm_unit_offset)
      return "norm_unit_offset" + at + ": llama.cpp's llama RMSNorm scales by the weight itself";
    if (!b.pre_norm) return "pre_norm = false" + at + ": llama.cpp's llama blocks are pre-norm";
    if (b.n_heads < 1 || b.d_model % b.n_heads || b.head_dim() % 2)
      return "d_model / n_heads" + at + " must be an even integer head size";
    if (b.d_model != first.d_model || b.n_heads != first.n_heads ||
        b.effective_n_kv_heads() != first.effective_n_kv_heads() || b.d_ff != first.d_ff ||
        b.norm_eps != first.norm_eps || b.rope_theta != first.rope_theta)
      return "layer " + std::to_string(i) +
             " differs from layer 0 in size, heads, norm_eps or rope_theta: the export writes "
             "one set of llama hyperparameters";
  }
  if (m.embed_scale != 1.0) return "embed_scale: llama.cpp's llama does not scale embeddings";
  if (m.mup_base_width) return "mup_base_width: llama.cpp does not scale the logits (muP)";
  if (m.mtp_n_predict > 0)
    return "mtp_n_predict = " + std::to_string(m.mtp_n_predict) +
           ": llama's architecture has no multi-token-prediction heads";
  return "";
}

std::optional<std::string> llama_gguf_tensor_name(const std::string& n) {
  for (auto [ours, theirs] : kGlobalTensors)
    if (n == ours) return std::string(theirs);
  std::string index, rest;
  if (!split_index(n, "layers.", index, rest)) return std::nullopt;
  for (auto [ours, theirs] : kLayerTensors)
    if (rest == ours) return "blk." + index + "." + theirs;
  return std::nullopt;
}

std::optional<std::string> internal_from_llama_gguf(const std::string& g) {
  for (auto [ours, theirs] : kGlobalTensors)
    if (g == theirs) return std::string(ours);
  std::string index, rest;
  if (!split_index(g, "blk.", index, rest)) return std::nullopt;
  for (auto [ours, theirs] : kLayerTensors)
    if (rest == theirs) return "layers." + index + "." + ours;
  return std::nullopt;
}

int64_t llama_rope_permute_heads(const std::string& n, int64_t n_heads, int64_t n_kv_heads) {
  const auto ends = [&](const char* s) {
    const size_t k = std::strlen(s);
    return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
  };
  if (ends(".attention.q_proj.weight") || ends(".attention.q_proj")) return n_heads;
  if (ends(".attention.k_proj.weight") || ends(".attention.k_proj")) return n_kv_heads;
  return 0;
}

void llama_rope_permute_rows(float* w, int64_t rows, int64_t cols, int64_t n_head, bool to_gguf) {
  if (n_head < 1 || rows % n_head || (rows / n_head) % 2)
    throw std::invalid_argument("rotary permutation: " + std::to_string(rows) +
                                " rows are not n_head = " + std::to_string(n_head) +
                                " heads of an even size");
  const int64_t hd = rows / n_head, half = hd / 2;
  const std::vector<float> src(w, w + rows * cols);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t hf = h * hd + s * half + i, gg = h * hd + 2 * i + s;
        const int64_t from = to_gguf ? hf : gg, to = to_gguf ? gg : hf;
        std::memcpy(w + to * cols, src.data() + from * cols, sizeof(float) * size_t(cols));
      }
}

}  // namespace bl
