#include "run/run_spec.h"

namespace bl {

std::string default_data_path() {
  return resource_dir() + "/data/tinyshakespeare.txt";
}

}  // namespace bl
