// main() of the op and kernel tests: runs every test on the kernel ISA named
// by BLOCKLAB_TEST_ISA (ctest registers each such executable once per ISA;
// tests/CMakeLists.txt), or on the CPU's best when it is unset. An ISA this
// CPU cannot execute skips the whole run, saying so.
#include <gtest/gtest.h>

#include <cstdlib>
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
  }

 private:
  std::string isa_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* isa = std::getenv("BLOCKLAB_TEST_ISA");
  ::testing::AddGlobalTestEnvironment(new KernelIsa(isa ? isa : ""));
  return RUN_ALL_TESTS();
}
