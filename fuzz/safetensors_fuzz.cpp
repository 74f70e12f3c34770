// Fuzzes the safetensors reader (header JSON, dtypes, shapes, offsets) and the
// finiteness check every weight load applies.
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bl::fuzz::expect_clean_naming(
      [&] {
        const bl::SafetensorsFile f = bl::parse_safetensors(data, size, "fuzz.safetensors");
        bl::require_finite(f, "fuzz.safetensors");
      },
      "fuzz.safetensors");
  return 0;
}
