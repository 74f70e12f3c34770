// Shared helpers of the quantization / LoRA / adapter tests: a small Llama-style
// model whose widths are multiples of every quantization group size (64 / 128).
#pragma once

#include <cmath>
#include <vector>

#include "core/model.h"
#include "tensor/graph.h"

namespace bl::test {

inline ModelConfig peft_model_config(bool tie = true, int64_t d_model = 64) {
  ModelConfig m;
  m.vocab_size = 40;
  m.n_layers = 2;
  m.tie_embeddings = tie;
  BlockConfig& c = m.block;
  c.attention = "gqa";
  c.ffn = "gated";
  c.norm = "rms_norm";
  c.position = "rope";
  c.d_model = d_model;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 128;
  c.bias = false;
  c.max_seq_len = 32;
  return m;
}

/// init_weights plus norm weights jittered around 1 (so nothing is trivially 1).
inline void init_model(LanguageModel& model, uint64_t seed = 1) {
  Rng rng(seed);
  model.init_weights(rng);
  for (Parameter* p : model.parameters())
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += float(0.1 * rng.normal());
}

inline std::vector<int32_t> token_ids(int64_t n, int64_t vocab, int64_t salt = 0) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t((i * 7 + 3 + salt * 13) % vocab));
  return ids;
}

/// Logits of tokens (B, T) without gradient recording, copied out.
inline std::vector<float> logits_of(LanguageModel& model, const std::vector<int32_t>& ids,
                                    int64_t B, int64_t T) {
  NoGradGuard ng;
  Tensor y = model.forward(Tokens{ids.data(), Shape{B, T}});
  std::vector<float> out(y.data(), y.data() + y.numel());
  current_graph().clear();
  return out;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, double(std::abs(a[i] - b[i])));
  return m;
}

}  // namespace bl::test
