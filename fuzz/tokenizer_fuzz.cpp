// Fuzzes the tokenizers: a stored tokenizer's JSON (first byte even), or a
// corpus that builds a char vocabulary (odd); then an encode / decode round trip.
#include <nlohmann/json.hpp>
#include <string_view>

#include "data/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  bl::fuzz::expect_clean([&] {
    std::unique_ptr<bl::Tokenizer> tok;
    if (data[0] % 2 == 0)
      tok = bl::tokenizer_from_json(nlohmann::json::parse(rest));
    else
      tok = bl::make_tokenizer("char", rest);
    const std::string text = data[0] % 2 ? std::string(rest) : std::string("hello, world");
    const std::vector<int32_t> ids = tok->encode(text);
    if (tok->decode(ids) != text) abort();  // a round trip must give the text back
    for (int64_t i = 0; i < std::min<int64_t>(tok->vocab_size(), 64); ++i) tok->piece(int32_t(i));
  });
  return 0;
}
