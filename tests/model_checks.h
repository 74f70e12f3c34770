// Whole-model checks shared by the component and zoo tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/model.h"
#include "tensor/graph.h"

namespace bl::test {

/// Random weights everywhere (norm weights near 1) so no path is trivially zero.
inline void randomize(Module& m, Rng& rng, float std = 0.3f) {
  for (Parameter* p : m.parameters()) {
    p->init_normal(rng, std);
    if (p->init_kind() == Init::kOnes)
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] += 1.0f;
  }
}

/// Max |logit difference| between one full forward pass over T tokens and
/// incremental decoding of the same tokens fed in pieces of the given sizes
/// (cycled until T tokens are consumed), for a batch of 2 sequences.
inline double max_decode_error(LanguageModel& model, int64_t T,
                               const std::vector<int64_t>& pieces) {
  const int64_t V = model.config().vocab_size;
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < 2 * T; ++i) ids.push_back(int32_t((i * 7 + 3) % V));
  Graph& g = current_graph();
  NoGradGuard ng;
  Tensor full = model.forward(Tokens{ids.data(), Shape{2, T}});
  std::vector<float> ref(full.data(), full.data() + full.numel());
  g.clear();
  DecodeState st = model.make_decode_state(2, T);
  double err = 0;
  int64_t t = 0;
  for (size_t k = 0; t < T; ++k) {
    const int64_t n = std::min(pieces[k % pieces.size()], T - t);
    std::vector<int32_t> chunk;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < n; ++i) chunk.push_back(ids[size_t(b * T + t + i)]);
    Tensor out = model.forward(Tokens{chunk.data(), Shape{2, n}}, &st);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t v = 0; v < V; ++v)
          err = std::max(err, double(std::abs(out.data()[(b * n + i) * V + v] -
                                              ref[size_t((b * T + t + i) * V + v)])));
    g.clear();
    t += n;
  }
  return err;
}

}  // namespace bl::test
