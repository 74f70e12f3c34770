// Fuzzes checkpoint.json: metadata, the embedded model / train configs and the
// tokenizer it rebuilds on resume and sample.
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "fuzz_util.h"
#include "train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = bl::fuzz::scratch_dir() / "ck";
  std::filesystem::create_directories(dir);
  bl::fuzz::write_file(dir / "checkpoint.json", data, size);
  bl::CheckpointInfo c;
  bool read = false;
  bl::fuzz::expect_clean_naming(
      [&] {
        c = bl::read_checkpoint_info(dir.string());
        read = true;
      },
      "checkpoint.json");
  if (read) bl::fuzz::expect_clean([&] { bl::tokenizer_from_json(c.tokenizer); });
  return 0;
}
