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

/// Threads for a loop over n_tasks unequal tasks: 1 inside an outer parallel
/// region, or when the whole loop's `work` (about multiply-adds) is below
/// `min_work`, where waking a team costs more than it saves (a loaded machine
/// makes that worse).
inline int task_threads(int64_t n_tasks, double work = 0, double min_work = 0) {
  if (omp_in_parallel() || work < min_work) return 1;
  const int64_t t = omp_get_max_threads() < n_tasks ? omp_get_max_threads() : n_tasks;
  return int(t > 1 ? t : 1);
}

/// f(task, thread) over [0, n) on nt threads, tasks handed out one by one;
/// per-thread scratch is indexed by `thread` (< nt).
template <class F>
void run_tasks(int64_t n, int nt, F&& f) {
  if (nt <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i, 0);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) f(i, omp_get_thread_num());
}

}  // namespace bl
