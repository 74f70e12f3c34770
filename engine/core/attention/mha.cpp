#include "core/attention/mha.h"

#include "core/config.h"

namespace bl {

MHA::MHA(const BlockConfig& c) : GQA(c, c.n_heads) {}

}  // namespace bl
