// main() of the engine and CLI tests. Runs every test on the kernel ISA named
// by --isa=NAME (ctest registers each op and kernel test once per ISA;
// tests/CMakeLists.txt) or BLOCKLAB_TEST_ISA, else on the CPU's best; an ISA
// this CPU cannot execute skips the whole run, saying so. Runs that write the
// default experiment database go to the build's test-data directory, never
// the user's own.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "simd/isa.h"

namespace {

class KernelIsa : public ::testing::Environment {
 public:
  explicit KernelIsa(std::string isa) : isa_(std::move(isa)) {}
  void SetUp() override {
    if (isa_.empty()) return;
    std::string err;
    if (!bl::set_kernel_isa(isa_, &err)) GTEST_SKIP() << err;
    ASSERT_EQ(bl::kernel_isa(), isa_);
    std::printf("kernel ISA: %s\n", bl::kernel_isa().c_str());
  }

 private:
  std::string isa_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string isa;
  if (const char* e = std::getenv("BLOCKLAB_TEST_ISA")) isa = e;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--isa=", 6) == 0) isa = argv[i] + 6;
#ifdef BLOCKLAB_TEST_DATA_HOME
  setenv("XDG_DATA_HOME", BLOCKLAB_TEST_DATA_HOME, 1);
#endif
  ::testing::AddGlobalTestEnvironment(new KernelIsa(isa));
  return RUN_ALL_TESTS();
}
