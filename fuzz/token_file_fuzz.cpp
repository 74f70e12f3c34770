// Fuzzes token files (`data prepare`): header parsing, the size check and the
// mapped id check. A file that is accepted must have every id readable and
// in the vocabulary.
#include "data/token_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = bl::fuzz::scratch_dir() / "corpus.tokens";
  bl::fuzz::write_file(path, data, size);
  bl::fuzz::expect_clean_naming(
      [&] {
        const bl::MappedTokens m(path.string(), 100);
        int64_t sum = 0;
        for (int32_t id : m.tokens()) {
          if (id < 0 || id >= 100) abort();  // the reader let a bad id through
          sum += id;
        }
        if (sum < 0) abort();
      },
      "corpus.tokens");
  return 0;
}
