// The gradient all-reduce alone, without the wait for a slower rank that the
// per-step "allreduce_ms" metric includes: under mpirun, every rank
// synchronises (a 1-byte broadcast), then sums an n-float buffer (default
// gpt-tiny's 818,048 gradients) with Communicator::allreduce_sum; rank 0
// prints the median of the repeats.
//   mpirun -np 2 build/bench/blocklab_allreduce_timing [N_FLOATS] [REPEATS]
// (BLOCKLAB_ALLREDUCE=mpi times MPI_Allreduce instead of the fixed-order sum.)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "dist/communicator.h"

int main(int argc, char** argv) {
  try {
    const int64_t n = argc > 1 ? std::atoll(argv[1]) : 818048;
    const int repeats = argc > 2 ? std::atoi(argv[2]) : 50;
    auto comm = bl::make_mpi_communicator();
    std::vector<float> buf(size_t(n), 1.0f);
    std::vector<double> ms;
    for (int i = 0; i < repeats + 3; ++i) {  // 3 warm-up rounds
      char sync = 0;
      comm->broadcast(&sync, 1, 0);
      const auto t0 = std::chrono::steady_clock::now();
      comm->allreduce_sum(buf.data(), n);
      const double t =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (i >= 3) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    if (comm->rank() == 0)
      std::printf("%d ranks, %lld floats (%.1f MB): all-reduce median %.3f ms, min %.3f ms (%s)\n",
                  comm->size(), (long long)n, double(n) * 4 / 1e6, ms[ms.size() / 2], ms[0],
                  comm->name().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blocklab_allreduce_timing: %s\n", e.what());
    return 1;
  }
}
