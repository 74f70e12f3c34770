// The MPI communicator (compiled only when CMake finds MPI). The one file of
// the engine that includes <mpi.h>.
//
// Sums run in a fixed order: MPI_Allreduce lets the library choose its
// algorithm (Open MPI's tuned component decides by message size, rank count
// and topology), and with it the order floats are added in. Instead the sum
// is a reduce-scatter by hand, then an allgather: rank r receives slice r of
// every rank's buffer (MPI_Alltoallv, data movement only), adds the N copies
// in rank order 0..N-1, and MPI_Allgatherv hands every rank every summed
// slice. That is the bandwidth-optimal shape of an all-reduce (each rank
// sends and receives 2(N-1)/N of the buffer), and its result depends on N
// only. BLOCKLAB_ALLREDUCE=mpi switches to MPI_Allreduce, to compare costs.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "dist/communicator.h"

namespace bl {

namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string(what) + " failed: " + msg);
}

int to_int(int64_t n, const char* what) {
  if (n < 0 || n > INT_MAX)
    throw std::runtime_error(std::string(what) + ": " + std::to_string(n) +
                             " elements exceed MPI's int count");
  return int(n);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      // Serialized: training may run on another thread than main(), but only
      // one thread at a time calls MPI (OpenMP threads never do).
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
      owns_ = true;
      if (provided < MPI_THREAD_SERIALIZED)
        throw std::runtime_error("this MPI library does not support MPI_THREAD_SERIALIZED");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    const char* mode = std::getenv("BLOCKLAB_ALLREDUCE");
    native_ = mode && std::strcmp(mode, "mpi") == 0;
  }
  ~MpiCommunicator() override {
    if (owns_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, int64_t n) override {
    if (size_ == 1 || n == 0) return;
    if (native_) {
      check(MPI_Allreduce(MPI_IN_PLACE, data, to_int(n, "MPI_Allreduce"), MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD),
            "MPI_Allreduce");
      return;
    }
    plan(n);
    const int mine = counts_[size_t(rank_)];
    // Slice rank_ of every rank's buffer, rank q's copy at scratch_[q * mine].
    for (int q = 0; q < size_; ++q) {
      recv_counts_[size_t(q)] = mine;
      recv_displs_[size_t(q)] = q * mine;
    }
    check(MPI_Alltoallv(data, counts_.data(), displs_.data(), MPI_FLOAT, scratch_.data(),
                        recv_counts_.data(), recv_displs_.data(), MPI_FLOAT, MPI_COMM_WORLD),
          "MPI_Alltoallv");
    float* out = data + displs_[size_t(rank_)];
    std::memcpy(out, scratch_.data(), sizeof(float) * size_t(mine));
    for (int q = 1; q < size_; ++q) {  // rank order: ((s0 + s1) + s2) + ...
      const float* s = scratch_.data() + size_t(q) * size_t(mine);
      for (int i = 0; i < mine; ++i) out[i] += s[i];
    }
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts_.data(), displs_.data(),
                         MPI_FLOAT, MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }

  void allreduce_sum(double* data, int64_t n) override {
    // Small vectors (losses, flags): every rank gathers all copies and adds
    // them in rank order.
    if (size_ == 1 || n == 0) return;
    const int count = to_int(n, "allreduce_sum");
    if (dscratch_.size() < size_t(n) * size_t(size_)) dscratch_.resize(size_t(n) * size_t(size_));
    check(
        MPI_Allgather(data, count, MPI_DOUBLE, dscratch_.data(), count, MPI_DOUBLE, MPI_COMM_WORLD),
        "MPI_Allgather");
    for (int64_t i = 0; i < n; ++i) {
      double s = dscratch_[size_t(i)];
      for (int q = 1; q < size_; ++q) s += dscratch_[size_t(q) * size_t(n) + size_t(i)];
      data[i] = s;
    }
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    // In pieces of at most INT_MAX bytes (MPI counts are ints).
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < bytes;) {
      const int64_t k = std::min<int64_t>(bytes - done, INT_MAX);
      check(MPI_Bcast(p + done, int(k), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
      done += k;
    }
  }

  std::vector<std::string> hosts() override {
    char mine[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(mine, &len);
    std::vector<char> all(size_t(size_) * MPI_MAX_PROCESSOR_NAME);
    check(MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME,
                        MPI_CHAR, MPI_COMM_WORLD),
          "MPI_Allgather");
    std::vector<std::string> out;
    for (int q = 0; q < size_; ++q) {
      const char* s = all.data() + size_t(q) * MPI_MAX_PROCESSOR_NAME;
      out.emplace_back(s, strnlen(s, MPI_MAX_PROCESSOR_NAME));
    }
    return out;
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

  std::string name() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, strnlen(version, sizeof version));
    if (const size_t nl = v.find_first_of(",\n"); nl != std::string::npos) v.resize(nl);
    return "MPI (" + v + ")";
  }

 private:
  /// Slices of an n-element buffer: rank q owns [displs_[q], displs_[q] + counts_[q]).
  /// Computed once per buffer size (the trainer's is fixed), so a warmed-up
  /// step allocates nothing.
  void plan(int64_t n) {
    if (n == planned_n_) return;
    to_int(n, "allreduce_sum");
    const int64_t chunk = (n + size_ - 1) / size_;
    counts_.assign(size_t(size_), 0);
    displs_.assign(size_t(size_), 0);
    for (int q = 0; q < size_; ++q) {
      const int64_t b = std::min<int64_t>(n, q * chunk), e = std::min<int64_t>(n, b + chunk);
      displs_[size_t(q)] = int(b);
      counts_[size_t(q)] = int(e - b);
    }
    recv_counts_.assign(size_t(size_), 0);
    recv_displs_.assign(size_t(size_), 0);
    scratch_.assign(size_t(chunk) * size_t(size_), 0.0f);
    planned_n_ = n;
  }

  int rank_ = 0, size_ = 1;
  bool owns_ = false, native_ = false;
  int64_t planned_n_ = -1;
  std::vector<int> counts_, displs_, recv_counts_, recv_displs_;
  std::vector<float> scratch_;
  std::vector<double> dscratch_;
};

}  // namespace

bool have_mpi() {
  return true;
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

}  // namespace bl
