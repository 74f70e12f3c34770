// Which vector ISA the engine's kernels run on, and what the machine is:
// reported by `blocklab-cli --version`, the bench JSON and every run record.
#pragma once

#include <string>
#include <vector>

namespace bl {

/// The ISA the kernels dispatch to now: "avx512", "avx2", "neon" or "scalar".
std::string kernel_isa();

/// The ISAs this CPU can execute and this build has kernels for, best first.
std::vector<std::string> available_isas();

/// Forces the kernels down to `name` (one of available_isas(), or "best" for
/// the default); false and a message naming the choices otherwise. The
/// environment variable BLOCKLAB_ISA does the same at start-up.
bool set_kernel_isa(const std::string& name, std::string* error = nullptr);

/// HWY_DYNAMIC_DISPATCH(fn) after applying BLOCKLAB_ISA: how the engine calls
/// a kernel compiled per ISA.
#define BL_DISPATCH(fn) (::bl::init_kernel_isa(), HWY_DYNAMIC_DISPATCH(fn))

/// Applies BLOCKLAB_ISA once (idempotent; every kernel entry calls it).
/// Throws std::invalid_argument naming the choices when the value is unknown.
void init_kernel_isa();

/// The CPU's model name (from the CPU itself, e.g. "AMD EPYC 7B13").
std::string cpu_name();

/// The GEMM library behind Eigen's products and the kernel it uses
/// (e.g. "openblas 0.3.21 (SkylakeX)"), or "eigen".
std::string blas_name();

/// One line: "cpu: ...; kernels: avx2 (of avx512, avx2, scalar); blas: ...".
std::string machine_summary();

}  // namespace bl
