// Data-parallel training across processes: the few collectives the trainer
// needs (sum over ranks, broadcast, rank and size), behind an interface so the
// engine never includes an MPI header outside engine/dist/mpi_communicator.cpp.
// A single process uses SingleProcessCommunicator (every collective is the
// identity); `mpirun -np N blocklab-cli train --distributed` uses the MPI one,
// built only when CMake finds MPI (BLOCKLAB_HAVE_MPI).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bl {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Element-wise sum over all ranks, in place. Every rank receives the same
  /// bits, and the terms are added in rank order 0, 1, ..., N-1 whatever
  /// algorithm the transport picks, so a run is reproducible at a given N.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  /// Copies `bytes` bytes at `data` from rank `root` to every rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  /// Host name of every rank, in rank order (collective: every rank calls it).
  virtual std::vector<std::string> hosts() = 0;
  /// Ends every rank of the job with `code` (an error on one rank would
  /// otherwise leave the others waiting in a collective forever).
  [[noreturn]] virtual void abort(int code) = 0;
  /// "single process", "MPI (Open MPI v4.1.4, ...)": for messages and records.
  virtual std::string name() const = 0;
};

/// One process alone: rank 0 of 1.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  void broadcast(void*, int64_t, int) override {}
  std::vector<std::string> hosts() override;
  [[noreturn]] void abort(int code) override;
  std::string name() const override { return "single process"; }
};

/// Whether this build has the MPI communicator.
bool have_mpi();

/// Initialises MPI (once per process; MPI_Finalize when the returned object is
/// destroyed) and returns MPI_COMM_WORLD's communicator. Without MPI in the
/// build: std::runtime_error saying how to install it and rebuild.
std::unique_ptr<Communicator> make_mpi_communicator();

/// `text` of rank `root` on every rank (its length first, then its bytes).
std::string broadcast_string(Communicator& comm, const std::string& text, int root);

}  // namespace bl
