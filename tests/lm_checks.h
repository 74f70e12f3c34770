// Whole-LanguageModel checks for attention components with a decoding state:
// logits of incremental decoding (in given chunk sizes) against the full
// forward pass, and a short training run on a repeated string.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/model.h"
#include "tensor/graph.h"
#include "train/optimizers/adamw.h"

namespace bl::test {

/// Random weights everywhere (norm weights near 1) so no path is trivially zero.
inline void randomize_weights(Module& m, Rng& rng, float std = 0.3f) {
  for (Parameter* p : m.parameters()) {
    p->init_normal(rng, std);
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  }
}

/// Max |logit difference| between one full forward pass over (2, T) tokens and
/// decoding the same tokens with a state in chunks of the given sizes (summing to T).
inline double decode_error(const ModelConfig& cfg, int64_t T, const std::vector<int64_t>& chunks,
                           uint64_t seed = 3) {
  LanguageModel model(cfg);
  Rng rng(seed);
  model.init_weights(rng);
  randomize_weights(model, rng, 0.2f);
  const int64_t V = cfg.vocab_size, B = 2;
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < B * T; ++i) ids.push_back(int32_t(rng.below(uint64_t(V))));
  Graph& g = current_graph();
  NoGradGuard ng;
  Tensor full = model.forward(Tokens{ids.data(), Shape{B, T}});
  std::vector<float> ref(full.data(), full.data() + full.numel());
  g.clear();
  DecodeState st = model.make_decode_state(B, T);
  double err = 0;
  int64_t t0 = 0;
  for (int64_t n : chunks) {
    std::vector<int32_t> chunk;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = t0; t < t0 + n; ++t) chunk.push_back(ids[size_t(b * T + t)]);
    Tensor out = model.forward(Tokens{chunk.data(), Shape{B, n}}, &st);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t v = 0; v < V; ++v)
          err = std::max(err, double(std::abs(out.data()[(b * n + t) * V + v] -
                                              ref[size_t((b * T + t0 + t) * V + v)])));
    g.clear();
    t0 += n;
  }
  EXPECT_EQ(t0, T) << "chunk sizes must sum to T";
  return err;
}

/// Chunk sizes 1, 1, ..., 1 (T of them).
inline std::vector<int64_t> one_at_a_time(int64_t T) {
  return std::vector<int64_t>(size_t(T), 1);
}

/// Trains cfg with AdamW on a repeated string for `steps` full-batch steps;
/// returns {first loss, last loss}.
inline std::pair<double, double> train_on_repeated_string(const ModelConfig& cfg, int steps,
                                                          float lr = 3e-3f) {
  LanguageModel model(cfg);
  Rng rng(1);
  model.init_weights(rng);
  const std::string text = "the quick brown fox jumps over the lazy dog. ";
  const int64_t B = 4, T = 24;
  std::vector<int32_t> x, y;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const size_t i = size_t(b * 7 + t);
      x.push_back(int32_t(uint8_t(text[i % text.size()]) % cfg.vocab_size));
      y.push_back(int32_t(uint8_t(text[(i + 1) % text.size()]) % cfg.vocab_size));
    }
  OptimizerOptions oo;
  oo.weight_decay = 0.0f;
  AdamW opt(model.parameters(), oo);
  Graph& g = current_graph();
  double first = 0, last = 0;
  for (int s = 0; s < steps; ++s) {
    for (Parameter* p : model.parameters()) p->zero_grad();
    Tensor loss = model.loss(Tokens{x.data(), Shape{B, T}}, Tokens{y.data(), Shape{B, T}});
    (s == 0 ? first : last) = loss.item();
    g.backward(loss);
    g.clear();
    opt.step(lr);
  }
  return {first, last};
}

}  // namespace bl::test
