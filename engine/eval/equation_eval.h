// A task with a checker for pass@k: lines "PROMPT=ANSWER" (the synthetic
// modular-arithmetic equations, data/synthetic.h). The model continues each
// "PROMPT=" with as many tokens as the answer has; a sample passes when they
// are exactly the answer's tokens.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"
#include "data/tokenizer.h"

namespace bl {

struct EquationEvalOptions {
  int64_t samples = 1;            // n per problem
  std::vector<int64_t> ks = {1};  // pass@k for each k <= samples
  float temperature = 0.0f;       // 0 = greedy (then samples is 1)
  uint64_t seed = 0;
  int64_t limit = 0;  // problems (0 = all)
};

struct EquationEvalResult {
  int64_t problems = 0;
  double sample_accuracy = 0;                         // fraction of all samples that pass
  std::vector<std::pair<int64_t, double>> pass_at_k;  // (k, mean pass@k)
};

/// Problems from text: every line with exactly one '=' and text on both
/// sides; other lines are skipped.
std::vector<std::pair<std::string, std::string>> parse_equations(const std::string& text);

/// Samples and checks (KV-cache decoding, problems with equal prompt lengths
/// batched). Throws std::invalid_argument for no problems, samples < 1, a k
/// outside [1, samples], greedy with samples > 1, or a prompt longer than the
/// model's context.
EquationEvalResult evaluate_equations(LanguageModel& model, const Tokenizer& tok,
                                      const std::vector<std::pair<std::string, std::string>>& eqs,
                                      const EquationEvalOptions& opt);

}  // namespace bl
