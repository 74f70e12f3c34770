// pass@k for tasks with a checker (Chen et al. 2021, "Evaluating Large
// Language Models Trained on Code"): with n samples of which c pass, the
// unbiased estimate of the chance that at least one of k samples passes is
// 1 - C(n-c, k) / C(n, k), computed as a product (no huge binomials).
#pragma once

#include <cstdint>
#include <vector>

namespace bl {

/// n >= 1 samples, 0 <= c <= n passing, 1 <= k <= n. Throws std::invalid_argument
/// naming the bad argument.
double pass_at_k(int64_t n, int64_t c, int64_t k);

/// Mean pass@k over problems, each with n[i] samples and c[i] passing.
double mean_pass_at_k(const std::vector<int64_t>& n, const std::vector<int64_t>& c, int64_t k);

}  // namespace bl
