// Fuzzes the --config / preset file reader: JSON parsing, the nesting bound,
// field types and every validation rule (load_preset_file).
#include "core/presets.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = bl::fuzz::scratch_dir() / "config.json";
  bl::fuzz::write_file(path, data, size);
  bl::fuzz::expect_clean_naming([&] { bl::load_preset_file(path.string()); }, path.string());
  return 0;
}
