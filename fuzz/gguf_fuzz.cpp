// Fuzzes the GGUF adapter reader (metadata, tensor infos, alignment, offsets).
#include "fuzz_util.h"
#include "lora/adapter_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = bl::fuzz::scratch_dir() / "adapter.gguf";
  bl::fuzz::write_file(path, data, size);
  bl::fuzz::expect_clean_naming([&] { bl::read_gguf_adapter(path.string()); }, path.string());
  return 0;
}
