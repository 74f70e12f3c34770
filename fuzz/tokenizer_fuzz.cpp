// Fuzzes the tokenizers: a stored tokenizer's JSON (first byte 0 mod 4), a
// Hugging Face byte-level BPE tokenizer.json (2 mod 4), or a corpus that
// builds a char vocabulary (odd); then an encode / decode round trip.
#include <nlohmann/json.hpp>
#include <string_view>

#include "data/bpe_tokenizer.h"
#include "data/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  bl::fuzz::expect_clean([&] {
    std::unique_ptr<bl::Tokenizer> tok;
    std::string text = "hello, world";
    if (data[0] % 2 == 1) {
      tok = bl::make_tokenizer("char", rest);
      text = std::string(rest);
    } else if (data[0] % 4 == 0) {
      tok = bl::tokenizer_from_json(nlohmann::json::parse(rest));
    } else {
      tok = std::make_unique<bl::BpeTokenizer>(
          bl::BpeTokenizer::from_hf_json(nlohmann::json::parse(rest), "tokenizer.json"));
      // Any bytes must round-trip through a byte-level BPE: added tokens,
      // invalid UTF-8, long pieces.
      text = "hello <|endoftext|> na\xc3\xafve \xff\xfe 'll  \n\n" + std::string(300, 'a');
    }
    const std::vector<int32_t> ids = tok->encode(text);
    if (tok->decode(ids) != text) abort();  // a round trip must give the text back
    for (int64_t i = 0; i < std::min<int64_t>(tok->vocab_size(), 64); ++i) tok->piece(int32_t(i));
  });
  return 0;
}
