#include "core/aux_outputs.h"

namespace bl {

AuxOutputs& aux_outputs() {
  thread_local AuxOutputs out;
  return out;
}

}  // namespace bl
