// Data-parallel loop over [0, n) on the engine's OpenMP threads. Runs inline
// for small n or when already inside a parallel region.
#pragma once

#include <omp.h>

#include <cstdint>

namespace bl {

template <class F>
void parallel_for(int64_t n, F&& f, int64_t min_per_thread = 1) {
  if (n <= 0) return;
  if (n < 2 * min_per_thread || omp_in_parallel() || omp_get_max_threads() == 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace bl
