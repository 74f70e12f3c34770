#include "eval/lm_eval.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/graph.h"

namespace bl {

LmEvalResult evaluate_lm(LanguageModel& model, const Tokenizer& tok,
                         std::span<const int32_t> tokens, int64_t batch_size, int64_t seq_len,
                         int64_t max_batches) {
  const int64_t n = int64_t(tokens.size());
  if (n < 2)
    throw std::invalid_argument("[eval] the text encodes to " + std::to_string(n) +
                                " token(s); at least 2 are needed to score one");
  if (batch_size < 1 || seq_len < 1 || max_batches < 0)
    throw std::invalid_argument("[eval] batch_size and seq_len must be >= 1 and batches >= 0");
  const int64_t T = std::min(seq_len, n - 1);
  int64_t windows = (n - 1) / T;
  if (max_batches > 0) windows = std::min(windows, max_batches * batch_size);

  // Byte length of every token, once (a 50k vocabulary costs ~1 ms).
  std::vector<int32_t> bytes_of(size_t(tok.vocab_size()));
  for (int64_t id = 0; id < tok.vocab_size(); ++id)
    bytes_of[size_t(id)] = int32_t(tok.piece(int32_t(id)).size());

  NoGradGuard no_grad;
  Graph& g = current_graph();
  std::vector<int32_t> x(size_t(batch_size * T)), y(size_t(batch_size * T));
  LmEvalResult r;
  double nats = 0;
  for (int64_t w0 = 0; w0 < windows; w0 += batch_size) {
    const int64_t b = std::min(batch_size, windows - w0);
    for (int64_t i = 0; i < b; ++i) {
      const int32_t* s = tokens.data() + (w0 + i) * T;
      std::copy(s, s + T, x.begin() + i * T);
      std::copy(s + 1, s + T + 1, y.begin() + i * T);
      for (int64_t t = 0; t < T; ++t) {
        const int32_t id = s[t + 1];
        if (id >= 0 && id < int32_t(bytes_of.size())) r.bytes += bytes_of[size_t(id)];
      }
    }
    const Shape shape{b, T};
    model.loss(Tokens{x.data(), shape}, Tokens{y.data(), shape}, false);
    nats += model.lm_loss() * double(b * T);  // lm_loss is the mean over b * T targets
    g.clear();
  }
  r.windows = windows;
  r.seq_len = T;
  r.tokens = windows * T;
  r.loss = nats / double(r.tokens);
  r.perplexity = std::exp(r.loss);
  r.bytes_per_token = double(r.bytes) / double(r.tokens);
  r.bits_per_byte = r.bytes > 0 ? nats / std::log(2.0) / double(r.bytes) : 0.0;
  return r;
}

}  // namespace bl
