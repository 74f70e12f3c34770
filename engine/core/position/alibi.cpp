#include "core/position/alibi.h"

#include <cmath>

#include "core/config.h"

namespace bl {

namespace {
std::vector<float> power_of_two_slopes(int64_t n) {
  std::vector<float> s;
  double start = std::pow(2.0, -8.0 / double(n));
  for (int64_t i = 0; i < n; ++i) s.push_back(float(std::pow(start, double(i + 1))));
  return s;
}
}  // namespace

std::vector<float> ALiBi::slopes(int64_t n_heads) {
  int64_t p = 1;
  while (p * 2 <= n_heads) p *= 2;
  std::vector<float> s = power_of_two_slopes(p);
  if (p == n_heads) return s;
  // Extra heads take every other slope of the 2p sequence.
  std::vector<float> extra = power_of_two_slopes(2 * p);
  for (int64_t i = 0; int64_t(s.size()) < n_heads; i += 2) s.push_back(extra[size_t(i)]);
  return s;
}

ALiBi::ALiBi(const BlockConfig& c) : slopes_(slopes(c.n_heads)) {}

}  // namespace bl
