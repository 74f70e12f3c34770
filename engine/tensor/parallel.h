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

/// Runs f(begin, end) over [0, n) in pieces of `chunk` elements, in parallel
/// when there is more than one piece.
template <class F>
void parallel_chunks(int64_t n, int64_t chunk, F&& f) {
  const int64_t pieces = (n + chunk - 1) / chunk;
  parallel_for(pieces, [&](int64_t c) {
    const int64_t b = c * chunk;
    f(b, n < b + chunk ? n : b + chunk);
  });
}

}  // namespace bl
