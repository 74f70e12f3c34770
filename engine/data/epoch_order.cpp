#include "data/epoch_order.h"

#include <cstddef>
#include <utility>

#include "tensor/rng.h"

namespace bl {

void epoch_order(std::vector<int64_t>& order, uint64_t seed, int64_t epoch) {
  const int64_t n = int64_t(order.size());
  for (int64_t j = 0; j < n; ++j) order[std::size_t(j)] = j;
  Rng rng(seed * 0x9E3779B97F4A7C15ULL + uint64_t(epoch) + 1);
  for (int64_t j = n - 1; j > 0; --j)
    std::swap(order[std::size_t(j)], order[std::size_t(rng.below(uint64_t(j + 1)))]);
}

}  // namespace bl
