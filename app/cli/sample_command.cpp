#include "commands.h"
#include "args.h"

namespace bl::cli {

int sample_command(const std::vector<std::string>& argv) {
  throw UsageError("sample needs a saved run (--run DIR); checkpoints arrive with the store");
}

}  // namespace bl::cli
