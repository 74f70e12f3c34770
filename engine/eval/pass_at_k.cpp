#include "eval/pass_at_k.h"

#include <stdexcept>
#include <string>

namespace bl {

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  if (n < 1)
    throw std::invalid_argument("[pass@k] n (samples) must be >= 1, got " + std::to_string(n));
  if (c < 0 || c > n)
    throw std::invalid_argument("[pass@k] c (passing samples) must be in [0, n = " +
                                std::to_string(n) + "], got " + std::to_string(c));
  if (k < 1 || k > n)
    throw std::invalid_argument("[pass@k] k must be in [1, n = " + std::to_string(n) + "], got " +
                                std::to_string(k));
  // Fewer than k failures: every k-subset holds a pass.
  if (n - c < k) return 1.0;
  // C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)  (the numpy form of the paper).
  double fail_all = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) fail_all *= 1.0 - double(k) / double(i);
  return 1.0 - fail_all;
}

double mean_pass_at_k(const std::vector<int64_t>& n, const std::vector<int64_t>& c, int64_t k) {
  if (n.size() != c.size() || n.empty())
    throw std::invalid_argument("[pass@k] n and c must be non-empty lists of the same length");
  double sum = 0;
  for (size_t i = 0; i < n.size(); ++i) sum += pass_at_k(n[i], c[i], k);
  return sum / double(n.size());
}

}  // namespace bl
