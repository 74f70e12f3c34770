#include "train/preference.h"

#include <algorithm>

#include "tensor/graph.h"

namespace bl {

std::vector<float> reference_logps(LanguageModel& model, const std::vector<PreferencePair>& pairs,
                                   int64_t seq_len, int64_t batch_pairs) {
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const int64_t n = int64_t(pairs.size()), B = std::max<int64_t>(1, batch_pairs);
  std::vector<float> out(size_t(2 * n));
  std::vector<int32_t> x(size_t(2 * B * seq_len)), y(x.size());
  std::vector<const PreferencePair*> batch(static_cast<size_t>(B));
  for (int64_t b0 = 0; b0 < n; b0 += B) {
    const int64_t nb = std::min(B, n - b0);
    for (int64_t i = 0; i < nb; ++i) batch[size_t(i)] = &pairs[size_t(b0 + i)];
    pack_preference_batch(batch.data(), nb, seq_len, x.data(), y.data());
    const Shape s{2 * nb, seq_len};
    Tensor lp = model.sequence_logprobs(Tokens{x.data(), s}, Tokens{y.data(), s});
    for (int64_t i = 0; i < nb; ++i) {
      out[size_t(2 * (b0 + i))] = lp.data()[i];
      out[size_t(2 * (b0 + i) + 1)] = lp.data()[nb + i];
    }
    g.clear();
  }
  return out;
}

}  // namespace bl
