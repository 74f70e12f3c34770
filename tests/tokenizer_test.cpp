#include "data/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "data/text_dataset.h"
#include "data/utf8.h"
#include "expect_error.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

using test::contains;
using test::error_of;

const std::string kShakespeare =
    std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt";

// Python: ''.join(sorted(set(open('tinyshakespeare.txt').read())))
const std::string kShakespeareVocab =
    "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

TEST(CharTokenizer, TinyShakespeareMatchesTorchRef) {
  const std::string text = read_text_file(kShakespeare);
  ASSERT_EQ(text.size(), 1115394u);
  const CharTokenizer tok = CharTokenizer::from_text(text);
  EXPECT_EQ(tok.vocab_size(), 65);
  EXPECT_EQ(tok.name(), "char");
  // ids are the positions in sorted(set(text)), i.e. code-point order
  for (size_t i = 0; i < kShakespeareVocab.size(); ++i) {
    EXPECT_EQ(tok.code_points()[i], char32_t(kShakespeareVocab[i]));
    EXPECT_EQ(tok.piece(int32_t(i)), std::string(1, kShakespeareVocab[i]));
  }
  for (size_t i = 1; i < tok.code_points().size(); ++i)
    EXPECT_LT(tok.code_points()[i - 1], tok.code_points()[i]);
  const std::vector<int32_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(tok.decode(ids), text);
  // "First Citizen:" starts the file; 'F' is id 18, ' ' id 1, '\n' id 0.
  EXPECT_EQ(ids[0], int32_t(kShakespeareVocab.find('F')));
  EXPECT_EQ(ids[0], 18);
  EXPECT_EQ(tok.encode(" \n"), (std::vector<int32_t>{1, 0}));
}

TEST(CharTokenizer, MultiByteUtf8RoundTrips) {
  const std::string text = "héllo wörld — 日本語 🙂 Ωmega\n";
  const CharTokenizer tok = CharTokenizer::from_text(text);
  const auto ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids), text);
  // one id per code point, not per byte
  size_t n_cp = 0;
  for (unsigned char c : text) n_cp += (c & 0xC0) != 0x80;
  EXPECT_EQ(ids.size(), n_cp);
  // ids ordered by code point: U+1F642 (the emoji) is the largest
  EXPECT_EQ(tok.code_points().back(), char32_t(0x1F642));
  EXPECT_EQ(tok.piece(int32_t(tok.vocab_size() - 1)), "🙂");
  for (size_t i = 1; i < tok.code_points().size(); ++i)
    EXPECT_LT(tok.code_points()[i - 1], tok.code_points()[i]);
  // every decode of valid ids is valid UTF-8
  std::vector<int32_t> all;
  for (int32_t i = 0; i < tok.vocab_size(); ++i) all.push_back(i);
  EXPECT_EQ(utf8::find_invalid(tok.decode(all)), std::string_view::npos);
}

TEST(CharTokenizer, UnknownCharacterIsNamed) {
  const CharTokenizer tok = CharTokenizer::from_text("abc");
  const std::string e1 = error_of([&] { tok.encode("abz"); });
  EXPECT_TRUE(contains(e1, "'z'")) << e1;
  EXPECT_TRUE(contains(e1, "U+007A")) << e1;
  EXPECT_TRUE(contains(e1, "byte offset 2")) << e1;
  const std::string e2 = error_of([&] { tok.encode("a日"); });
  EXPECT_TRUE(contains(e2, "U+65E5")) << e2;
  const std::string e3 = error_of([&] { tok.encode("a\n"); });
  EXPECT_TRUE(contains(e3, "'\\n' (U+000A)")) << e3;
}

TEST(CharTokenizer, InvalidUtf8AndBadIds) {
  const CharTokenizer tok = CharTokenizer::from_text("abc");
  EXPECT_TRUE(contains(error_of([&] { tok.encode("ab\xC3("); }), "byte offset 2"));
  EXPECT_TRUE(contains(error_of([&] { CharTokenizer::from_text("x\xC0\xAF"); }), "byte offset 1"))
      << "overlong encoding must be rejected";
  EXPECT_TRUE(
      contains(error_of([&] { CharTokenizer::from_text("\xED\xA0\x80"); }), "byte offset 0"))
      << "surrogates must be rejected";
  EXPECT_TRUE(
      contains(error_of([&] { CharTokenizer::from_text("ab\xF4\x90\x80\x80"); }), "byte offset 2"))
      << "code points above U+10FFFF must be rejected";
  EXPECT_TRUE(contains(error_of([&] { CharTokenizer::from_text("a\xE6\x97"); }), "byte offset 1"))
      << "truncated sequence";
  EXPECT_TRUE(contains(error_of([&] { CharTokenizer::from_text(""); }), "empty"));
  EXPECT_TRUE(contains(error_of([&] { tok.decode(std::vector<int32_t>{0, 3}); }), "token id 3"));
  EXPECT_TRUE(contains(error_of([&] { tok.decode(std::vector<int32_t>{-1}); }), "token id -1"));
  EXPECT_THROW(CharTokenizer(std::vector<char32_t>{'b', 'a'}), std::invalid_argument);
  EXPECT_THROW(CharTokenizer(std::vector<char32_t>{0xD800}), std::invalid_argument);
}

TEST(ByteTokenizer, AnyBytesRoundTrip) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 256);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  const auto ids = tok.encode(all);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[size_t(b)], b);
  EXPECT_EQ(tok.decode(ids), all);
  const std::string u = "日本🙂";
  EXPECT_EQ(tok.encode(u).size(), u.size());
  EXPECT_EQ(tok.decode(tok.encode(u)), u);
  // a truncated multi-byte sequence decodes to the raw (invalid UTF-8) bytes, by design
  auto cut = tok.encode(u);
  cut.pop_back();
  EXPECT_NE(utf8::find_invalid(tok.decode(cut)), std::string_view::npos);
  EXPECT_TRUE(contains(error_of([&] { tok.decode(std::vector<int32_t>{256}); }), "token id 256"));
}

TEST(Tokenizer, JsonRoundTripAndFactory) {
  const CharTokenizer tok = CharTokenizer::from_text("zebra 日本🙂");
  const nlohmann::json j = tok.to_json();
  EXPECT_EQ(j["type"], "char");
  // through text, as a run would store it
  auto back = tokenizer_from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(back->name(), "char");
  EXPECT_EQ(back->vocab_size(), tok.vocab_size());
  EXPECT_EQ(back->encode("bra 🙂"), tok.encode("bra 🙂"));
  auto byte = tokenizer_from_json(ByteTokenizer().to_json());
  EXPECT_EQ(byte->name(), "byte");
  EXPECT_EQ(byte->vocab_size(), 256);

  EXPECT_THROW(tokenizer_from_json(nlohmann::json{{"type", "bpe"}}), std::invalid_argument);
  EXPECT_THROW(tokenizer_from_json(nlohmann::json::array()), std::invalid_argument);
  nlohmann::json bad = j;
  bad["vocab_size"] = 3;
  EXPECT_TRUE(contains(error_of([&] { tokenizer_from_json(bad); }), "vocab_size"));

  EXPECT_EQ(make_tokenizer("char", "abca")->vocab_size(), 3);
  EXPECT_EQ(make_tokenizer("byte", "")->vocab_size(), 256);
  const std::string e = error_of([&] { make_tokenizer("wordpiece", "x"); });
  EXPECT_TRUE(contains(e, "wordpiece") && contains(e, "char") && contains(e, "byte")) << e;
}

}  // namespace
}  // namespace bl
