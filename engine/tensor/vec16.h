// 16 floats as one GCC/Clang vector: element-wise arithmetic that lowers to
// the target's vector ISA (one zmm with AVX-512, two ymm with AVX2). Aligned
// to 4 and may_alias, so a Vec16* may point into any float buffer.
#pragma once

namespace bl {

typedef float Vec16 __attribute__((vector_size(64), aligned(4), may_alias));

}  // namespace bl
