#include "simd/isa.h"

#include "simd/targets.h"
// clang-format off: targets.h must come before Highway's headers.
#include <hwy/highway.h>
#include <hwy/targets.h>
// clang-format on

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

#ifdef EIGEN_USE_BLAS
extern "C" char* openblas_get_config(void);
extern "C" char* openblas_get_corename(void);
#endif

namespace bl {

namespace {

struct IsaName {
  const char* name;
  int64_t targets;  // Highway target bits that count as this ISA
};

// Best first, in Highway's bit order (a lower bit is a better target).
constexpr IsaName kIsas[] = {
    {"avx512", HWY_AVX3 | HWY_AVX3_DL},
    {"avx2", HWY_AVX2},
    {"neon", HWY_NEON},
    {"scalar", HWY_SCALAR | HWY_EMU128},
};

int64_t compiled_and_supported() {
  return hwy::SupportedTargets() & HWY_TARGETS;
}

// What the CPU supports of the compiled targets, read once before any forcing.
int64_t cpu_targets() {
  static const int64_t t = compiled_and_supported();
  return t;
}

const char* name_of(int64_t target) {
  for (const IsaName& i : kIsas)
    if (i.targets & target) return i.name;
  return "scalar";
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::once_flag g_env_once;

}  // namespace

std::string kernel_isa() {
  init_kernel_isa();
  const int64_t t = compiled_and_supported();
  return name_of(t & -t);  // the lowest bit: the best target, the one dispatch picks
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  const int64_t all = cpu_targets();
  for (const IsaName& i : kIsas)
    if ((all & i.targets) || std::string(i.name) == "scalar") out.push_back(i.name);
  return out;
}

bool set_kernel_isa(const std::string& name, std::string* error) {
  const int64_t cpu = cpu_targets();
  if (name == "best" || name.empty()) {
    hwy::DisableTargets(0);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    return true;
  }
  const std::vector<std::string> avail = available_isas();
  for (const IsaName& i : kIsas) {
    if (name != i.name) continue;
    bool ok = false;
    for (const std::string& a : avail) ok = ok || a == name;
    if (!ok) break;
    // Disable every compiled target better than this one.
    const int64_t wanted = cpu & i.targets;
    const int64_t lowest = wanted & -wanted;
    const int64_t better = lowest ? (lowest - 1) : (HWY_SCALAR - 1);
    hwy::DisableTargets(better & ~(HWY_SCALAR | HWY_EMU128));
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    return true;
  }
  if (error)
    *error = "unknown or unsupported kernel ISA '" + name + "': this CPU and build have " +
             join(avail) + " (or 'best')";
  return false;
}

void init_kernel_isa() {
  std::call_once(g_env_once, [] {
    const char* e = std::getenv("BLOCKLAB_ISA");
    if (!e || !*e) return;
    std::string err;
    if (!set_kernel_isa(e, &err)) throw std::invalid_argument("BLOCKLAB_ISA: " + err);
  });
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "model name" || key == "Model" || key == "cpu model") {
      const auto v = line.find_first_not_of(" \t", colon + 1);
      return v == std::string::npos ? "unknown" : line.substr(v);
    }
  }
  return "unknown";
}

std::string blas_name() {
#ifdef EIGEN_USE_BLAS
  std::istringstream cfg(openblas_get_config());
  std::string product, version;
  cfg >> product >> version;
  return "openblas " + version + " (" + openblas_get_corename() + ")";
#else
  return "eigen";
#endif
}

std::string machine_summary() {
  return "cpu: " + cpu_name() + "; kernels: " + kernel_isa() +
         " (available: " + join(available_isas()) + "); blas: " + blas_name();
}

}  // namespace bl
