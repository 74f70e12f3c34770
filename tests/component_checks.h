// Checks shared by the component-variant tests: random weights, cached
// decoding against the full forward pass under any chunking of the sequence,
// and a short training run.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/model.h"
#include "tensor/graph.h"
#include "train/optimizers/adamw.h"

namespace bl::test {

/// Random weights everywhere (norm weights near 1) so no gradient path is trivially zero.
inline void randomize(Module& m, Rng& rng, float std = 0.3f) {
  for (Parameter* p : m.parameters()) {
    p->init_normal(rng, std);
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  }
}

/// Copies every parameter of `from` into the parameter of `to` with the same name.
inline void copy_parameters(Module& from, Module& to) {
  auto dst = to.named_parameters();
  for (auto& [name, p] : from.named_parameters())
    for (auto& [n2, q] : dst)
      if (n2 == name) std::copy(p->data(), p->data() + p->numel(), q->data());
}

/// Max |logit difference| between the full forward pass over 2 sequences of T
/// tokens and incremental decoding that feeds them in pieces of the given
/// sizes (summing to T), starting from a state made for max_len tokens.
inline double cached_decoding_error(LanguageModel& model, int64_t T,
                                    const std::vector<int64_t>& pieces, int64_t max_len) {
  EXPECT_EQ(std::accumulate(pieces.begin(), pieces.end(), int64_t(0)), T);
  const int64_t V = model.config().vocab_size;
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < 2 * T; ++i) ids.push_back(int32_t((i * 7 + 3 + i / 5) % V));
  Graph& g = current_graph();
  NoGradGuard ng;
  g.clear();
  Tensor full = model.forward(Tokens{ids.data(), Shape{2, T}});
  std::vector<float> ref(full.data(), full.data() + full.numel());
  g.clear();
  DecodeState st = model.make_decode_state(2, max_len);
  double max_err = 0;
  int64_t at = 0;
  for (int64_t n : pieces) {
    std::vector<int32_t> chunk;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = at; t < at + n; ++t) chunk.push_back(ids[size_t(b * T + t)]);
    Tensor out = model.forward(Tokens{chunk.data(), Shape{2, n}}, &st);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t v = 0; v < V; ++v)
          max_err = std::max(max_err, double(std::abs(out.data()[(b * n + t) * V + v] -
                                                      ref[size_t((b * T + at + t) * V + v)])));
    g.clear();
    at += n;
    for (auto& s : st) EXPECT_EQ(s->length, at);
  }
  return max_err;
}

/// Chunk sizes 1, 1, ..., 1 (T of them).
inline std::vector<int64_t> one_at_a_time(int64_t T) {
  return std::vector<int64_t>(size_t(T), 1);
}

/// cached_decoding_error of a fresh model of `cfg` with random weights.
inline double decode_error(const ModelConfig& cfg, int64_t T, const std::vector<int64_t>& pieces,
                           uint64_t seed = 3) {
  LanguageModel model(cfg);
  Rng rng(seed);
  model.init_weights(rng);
  randomize(model, rng, 0.2f);
  return cached_decoding_error(model, T, pieces, T);
}

/// Mean loss of the first and of the last `steps` / 5 steps of AdamW on one
/// batch of a short repeated string (a model that learns must fit it quickly).
inline std::pair<double, double> train_on_repeated_text(const ModelConfig& cfg, int steps = 30) {
  const std::string text = "the cat sat on the mat. the dog sat on the log. ";
  LanguageModel model(cfg);
  Rng rng(1);
  model.init_weights(rng);
  const int64_t B = 4, T = 16;
  std::vector<int32_t> x, y;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      size_t i = size_t(b * 11 + t);
      x.push_back(int32_t(uint8_t(text[i % text.size()])) % int32_t(cfg.vocab_size));
      y.push_back(int32_t(uint8_t(text[(i + 1) % text.size()])) % int32_t(cfg.vocab_size));
    }
  OptimizerOptions o;
  o.weight_decay = 0.0f;
  AdamW opt(model.parameters(), o);
  Graph& g = current_graph();
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    g.clear();
    Tensor l = model.loss(Tokens{x.data(), Shape{B, T}}, Tokens{y.data(), Shape{B, T}});
    losses.push_back(double(l.item()));
    g.backward(l);
    opt.step(1e-2f);
  }
  g.clear();
  const int k = std::max(1, steps / 5);
  double first = 0, last = 0;
  for (int i = 0; i < k; ++i)
    first += losses[size_t(i)] / k, last += losses[losses.size() - 1 - size_t(i)] / k;
  return {first, last};
}

}  // namespace bl::test
