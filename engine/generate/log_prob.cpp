#include "generate/log_prob.h"

#include <stdexcept>
#include <string>

#include "generate/sampler.h"
#include "tensor/graph.h"

namespace bl {

double sequence_log_prob(LanguageModel& model, const std::vector<int32_t>& prompt,
                         const std::vector<int32_t>& continuation) {
  const int64_t max_len = model.config().block.max_seq_len;
  std::vector<int32_t> ids = prompt;
  ids.insert(ids.end(), continuation.begin(), continuation.end());
  if (prompt.empty() || int64_t(ids.size()) > max_len)
    throw std::invalid_argument(
        "[sequence_log_prob] the prompt must be non-empty and prompt + continuation at most "
        "max_seq_len = " +
        std::to_string(max_len) + " tokens");
  NoGradGuard no_grad;
  const int64_t vocab = model.config().vocab_size;
  Tensor logits = model.forward(Tokens{ids.data(), Shape{1, int64_t(ids.size())}});
  double total = 0;
  for (size_t i = 0; i < continuation.size(); ++i) {
    const int64_t pos = int64_t(prompt.size() + i) - 1;  // the logits that predict it
    total += log_softmax(logits.data() + pos * vocab, vocab)[size_t(continuation[i])];
  }
  current_graph().clear();
  return total;
}

}  // namespace bl
