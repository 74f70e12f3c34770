// The vector ISAs the engine's kernels are compiled for, included before any
// Highway header. Each kernel source is compiled once per target
// (hwy/foreach_target.h) and the best one the CPU supports is picked at run
// time; BLOCKLAB_ISA (simd/isa.h) can force a lower one.
//
// x86-64: AVX-512 (Highway's AVX3), AVX2+FMA, and scalar. SSE4/SSSE3 are left
// out to keep build time down: a CPU without AVX2 runs the scalar kernels.
// AArch64: NEON and scalar (SVE is left out so lane counts are compile-time
// constants, which the register-tiled kernels rely on).
#pragma once

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS \
  (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif
// Every attainable target, also those below the compiler's baseline, so an
// AVX-512 build still has the AVX2 and scalar paths that tests compare.
#ifndef HWY_COMPILE_ALL_ATTAINABLE
#define HWY_COMPILE_ALL_ATTAINABLE
#endif
