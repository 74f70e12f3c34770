#include "dist/communicator.h"

#include <cstdlib>
#include <stdexcept>

#include "store/process_status.h"

namespace bl {

std::vector<std::string> SingleProcessCommunicator::hosts() {
  return {host_name()};
}

void SingleProcessCommunicator::abort(int code) {
  std::exit(code);
}

std::string broadcast_string(Communicator& comm, const std::string& text, int root) {
  int64_t n = int64_t(text.size());
  comm.broadcast(&n, sizeof n, root);
  std::string out = comm.rank() == root ? text : std::string(size_t(n), '\0');
  comm.broadcast(out.data(), n, root);
  return out;
}

#ifndef BLOCKLAB_HAVE_MPI
bool have_mpi() {
  return false;
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  throw std::runtime_error(
      "--distributed needs MPI, and this blocklab-cli was built without it: install Open MPI "
      "(Debian: apt-get install libopenmpi-dev openmpi-bin, or bash scripts/install-deps.sh), "
      "then reconfigure and rebuild (cmake -S . -B build && cmake --build build); CMake then "
      "reports \"MPI found: data-parallel training (--distributed) enabled\"");
}
#endif

}  // namespace bl
