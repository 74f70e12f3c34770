#include "eval/equation_eval.h"

#include <sstream>
#include <stdexcept>

#include "eval/pass_at_k.h"
#include "generate/sampler.h"

namespace bl {

std::vector<std::pair<std::string, std::string>> parse_equations(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 >= line.size() ||
        line.find('=', eq + 1) != std::string::npos)
      continue;
    out.emplace_back(line.substr(0, eq + 1), line.substr(eq + 1));
  }
  return out;
}

EquationEvalResult evaluate_equations(LanguageModel& model, const Tokenizer& tok,
                                      const std::vector<std::pair<std::string, std::string>>& eqs,
                                      const EquationEvalOptions& opt) {
  if (opt.samples < 1) throw std::invalid_argument("samples must be >= 1");
  if (opt.temperature <= 0 && opt.samples > 1)
    throw std::invalid_argument(
        "greedy decoding (temperature 0) gives one answer: use "
        "samples 1, or a temperature > 0 for pass@k with k > 1");
  for (int64_t k : opt.ks)
    if (k < 1 || k > opt.samples)
      throw std::invalid_argument("k must be in [1, samples = " + std::to_string(opt.samples) +
                                  "], got " + std::to_string(k));
  const int64_t n_problems =
      opt.limit > 0 ? std::min<int64_t>(opt.limit, int64_t(eqs.size())) : int64_t(eqs.size());
  if (n_problems == 0) throw std::invalid_argument("no PROMPT=ANSWER lines to evaluate");
  const int64_t ctx = model.config().block.max_seq_len;
  struct Problem {
    std::vector<int32_t> prompt, answer;
  };
  std::vector<Problem> ps(static_cast<size_t>(n_problems));
  for (int64_t i = 0; i < n_problems; ++i) {
    ps[size_t(i)] = {tok.encode(eqs[size_t(i)].first), tok.encode(eqs[size_t(i)].second)};
    if (int64_t(ps[size_t(i)].prompt.size() + ps[size_t(i)].answer.size()) > ctx)
      throw std::invalid_argument("problem " + std::to_string(i + 1) + " (" + eqs[size_t(i)].first +
                                  ") is longer than the model's context of " + std::to_string(ctx) +
                                  " tokens");
  }
  SamplingOptions so;
  so.temperature = opt.temperature;
  std::vector<int64_t> n(size_t(n_problems), opt.samples), c(size_t(n_problems), 0);
  // Rows: every sample of every problem; runs of equal prompt and answer
  // lengths go through generate_batch together (up to 64 rows).
  constexpr int64_t kRows = 64;
  const int64_t total = n_problems * opt.samples;
  int64_t passed = 0;
  for (int64_t r0 = 0; r0 < total;) {
    const Problem& first = ps[size_t(r0 / opt.samples)];
    int64_t r1 = r0 + 1;
    while (r1 < total && r1 - r0 < kRows &&
           ps[size_t(r1 / opt.samples)].prompt.size() == first.prompt.size() &&
           ps[size_t(r1 / opt.samples)].answer.size() == first.answer.size())
      ++r1;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<Rng> rngs;
    for (int64_t r = r0; r < r1; ++r) {
      prompts.push_back(ps[size_t(r / opt.samples)].prompt);
      rngs.emplace_back(opt.seed * 1000003ULL + uint64_t(r));  // a row's draws: its own
    }
    so.max_new_tokens = int64_t(first.answer.size());
    const auto outs = generate_batch(model, prompts, so, rngs);
    for (int64_t r = r0; r < r1; ++r)
      if (outs[size_t(r - r0)] == ps[size_t(r / opt.samples)].answer) {
        ++c[size_t(r / opt.samples)];
        ++passed;
      }
    r0 = r1;
  }
  EquationEvalResult res;
  res.problems = n_problems;
  res.sample_accuracy = double(passed) / double(total);
  for (int64_t k : opt.ks) res.pass_at_k.emplace_back(k, mean_pass_at_k(n, c, k));
  return res;
}

}  // namespace bl
