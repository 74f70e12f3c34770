// Byte-level BPE: GPT-2 pre-tokenisation, training (hand-computed merges,
// determinism), encode/decode round trips on the real corpus and on arbitrary
// bytes, Hugging Face tokenizer.json written -> read and hand-written GPT-2
// style files, and refusals that name the field.
#include "data/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "data/bpe_trainer.h"
#include "data/byte_level.h"
#include "data/pretokenize.h"
#include "data/text_dataset.h"
#include "expect_error.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::error_of;

const std::string kShakespeare =
    std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt";

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : gpt2_pretokenize(s)) out.emplace_back(p);
  return out;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("blocklab-bpe-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Pretokenize, MatchesGpt2Pattern) {
  // Expected pieces from Python: regex.findall(GPT-2's pattern, text).
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("I'm here, they're 42!"),
            (V{"I", "'m", " here", ",", " they", "'re", " 42", "!"}));
  EXPECT_EQ(split("a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(split("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("end  "), (V{"end", "  "}));
  EXPECT_EQ(split("x !'s"), (V{"x", " !'", "s"}));
  EXPECT_EQ(split("abc123def"), (V{"abc", "123", "def"}));
  EXPECT_EQ(split("caf\xc3\xa9 \xc2\xbd"), (V{"caf\xc3\xa9", " \xc2\xbd"}));  // café ½
  EXPECT_EQ(split("\xe2\x80\x94hi"), (V{"\xe2\x80\x94", "hi"}));  // em dash is punctuation
}

TEST(Pretokenize, PiecesConcatenateToAnyBytes) {
  std::mt19937 rng(7);
  for (int rep = 0; rep < 200; ++rep) {
    std::string s(size_t(rng() % 200), '\0');
    for (char& c : s) c = char(rng() % 256);
    std::string joined;
    for (auto p : gpt2_pretokenize(s)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, s);
  }
}

TEST(ByteLevel, MappingIsGpt2s) {
  EXPECT_EQ(byte_level::encode(" "), "\xc4\xa0");   // 'Ġ'
  EXPECT_EQ(byte_level::encode("\n"), "\xc4\x8a");  // 'Ċ'
  EXPECT_EQ(byte_level::encode("A!~"), "A!~");
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, char(b));
    EXPECT_EQ(byte_level::decode(byte_level::encode(one)), one);
  }
  EXPECT_FALSE(byte_level::decode(" "));  // a raw space is not in the alphabet
}

TEST(BpeTrainer, MergesMatchHandComputation) {
  // "ab ab ab abc" -> pieces "ab", " ab" x2, " abc". Pair counts: (a,b) 4,
  // (' ',a) 3, (b,c) 1 -> merge a+b = 256; then (' ',256) 3 -> 257 " ab";
  // then (257,c) 1 -> 258 " abc"; then no pair is left.
  BpeTrainStats st;
  const BpeTokenizer t = train_bpe("ab ab ab abc", 300, &st);
  using M = BpeTokenizer::Merge;
  EXPECT_EQ(t.merges(), (std::vector<M>{{'a', 'b'}, {' ', 256}, {257, 'c'}}));
  EXPECT_EQ(t.vocab_size(), 259);
  EXPECT_TRUE(st.exhausted);
  EXPECT_EQ(st.unique_words, 3);
  EXPECT_EQ(st.pieces, 4);
  EXPECT_EQ(t.encode("ab ab abc"), (std::vector<int32_t>{256, 257, 258}));
  // Ties go to the smaller id pair: "ab cd" has (a,b) (' ',c) (c,d) once each.
  const BpeTokenizer u = train_bpe("ab cd", 300);
  EXPECT_EQ(u.merges(), (std::vector<M>{{' ', 'c'}, {'a', 'b'}, {256, 'd'}}));
  // A budget stops it: 257 tokens = one merge.
  EXPECT_EQ(train_bpe("ab ab ab abc", 257).merges().size(), 1u);
  EXPECT_TRUE(contains(error_of([] { train_bpe("x", 100); }), "vocab_size 100"));
}

TEST(BpeTrainer, TinyShakespeareRoundTripsAndIsDeterministic) {
  const std::string text = read_text_file(kShakespeare);
  BpeTrainStats st;
  const BpeTokenizer a = train_bpe(text, 1024, &st);
  const BpeTokenizer b = train_bpe(text, 1024);
  EXPECT_EQ(a.vocab_size(), 1024);
  EXPECT_EQ(st.merges, 768);
  EXPECT_EQ(a.merges(), b.merges());
  const std::vector<int32_t> ids = a.encode(text);
  EXPECT_EQ(a.decode(ids), text);
  // Compression at 1k tokens on this corpus: 2.43 bytes per token (measured).
  const double bpt = double(text.size()) / double(ids.size());
  EXPECT_GT(bpt, 2.3) << bpt;
  EXPECT_LT(bpt, 2.6) << bpt;
  // The most frequent merge of English with GPT-2 splitting is a space or a
  // common pair; the first merge's token must be two bytes long.
  EXPECT_EQ(a.piece(256).size(), 2u);
  // Encoding each piece alone gives the same ids as encoding the whole text.
  std::vector<int32_t> by_piece;
  for (auto p : gpt2_pretokenize(std::string_view(text).substr(0, 5000))) {
    auto v = a.encode(p);
    by_piece.insert(by_piece.end(), v.begin(), v.end());
  }
  EXPECT_EQ(by_piece, a.encode(std::string_view(text).substr(0, 5000)));
}

TEST(BpeTokenizer, ArbitraryBytesAndUtf8RoundTrip) {
  const BpeTokenizer t = train_bpe(read_text_file(kShakespeare).substr(0, 200000), 600);
  std::mt19937 rng(11);
  for (int rep = 0; rep < 300; ++rep) {
    std::string s(size_t(rng() % 300), '\0');
    for (char& c : s) c = char(rng() % 256);
    EXPECT_EQ(t.decode(t.encode(s)), s);
  }
  const std::string utf8 = "naïve café — 日本語のテキスト 🙂 ½ ² Ω\n\tend  ";
  EXPECT_EQ(t.decode(t.encode(utf8)), utf8);
  const std::string long_word(100000, 'a');  // one piece: the heap keeps it O(n log n)
  EXPECT_EQ(t.decode(t.encode(long_word)), long_word);
  EXPECT_TRUE(contains(error_of([&] { t.decode(std::vector<int32_t>{600}); }), "600"));
}

TEST(BpeTokenizer, TokenizerJsonWrittenThenReadEncodesIdentically) {
  const std::string text = read_text_file(kShakespeare).substr(0, 300000);
  const BpeTokenizer t = train_bpe(text, 700);
  const fs::path dir = temp_dir("rw");
  const std::string file = t.save(dir.string());
  const nlohmann::json doc = nlohmann::json::parse(std::ifstream(file));
  EXPECT_EQ(doc["model"]["type"], "BPE");
  EXPECT_EQ(doc["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(doc["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(doc["model"]["vocab"].size(), 700u);
  EXPECT_EQ(doc["model"]["vocab"]["\xc4\xa0"], int(' '));  // 'Ġ' is byte 0x20 = id 32
  const BpeTokenizer r = BpeTokenizer::load(dir.string());
  EXPECT_EQ(r.merges(), t.merges());
  EXPECT_EQ(r.encode(text), t.encode(text));
  EXPECT_EQ(r.source(), fs::absolute(file).lexically_normal().string());
  EXPECT_EQ(r.source_sha256().size(), 64u);
  // Through the factory and the run record.
  auto f = make_tokenizer("bpe:" + dir.string(), "");
  EXPECT_EQ(f->name(), "bpe");
  auto rec = tokenizer_from_json(f->to_json());
  EXPECT_EQ(rec->encode(text), t.encode(text));
  EXPECT_EQ(rec->to_json(), f->to_json());
  fs::remove_all(dir);
}

// A GPT-2 style file written by hand: ids in bytes_to_unicode order, one merge
// per format, <|endoftext|> both in the vocab and an added token.
nlohmann::json gpt2_style() {
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  std::vector<int> order;
  for (int b = 0; b < 256; ++b)
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) order.push_back(b);
  for (int b = 0; b < 256; ++b)
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) order.push_back(b);
  for (int b : order) vocab[byte_level::encode(std::string(1, char(b)))] = id++;
  vocab["\xc4\xa0t"] = 256;  // "Ġt"
  vocab["he"] = 257;
  vocab["\xc4\xa0the"] = 258;  // "Ġthe"
  vocab["<|endoftext|>"] = 259;
  return {{"version", "1.0"},
          {"added_tokens",
           {{{"id", 259}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges",
             {"\xc4\xa0 t", nlohmann::json::array({"h", "e"}),
              nlohmann::json::array({"\xc4\xa0t", "he"})}}}}};
}

TEST(BpeTokenizer, ReadsHandWrittenGpt2StyleFile) {
  const BpeTokenizer t = BpeTokenizer::from_hf_json(gpt2_style(), "gpt2.json");
  EXPECT_EQ(t.vocab_size(), 260);
  // " the" -> Ġt + he -> Ġthe; "the" -> t he; the added token is matched whole.
  // 't' is the 84th printable byte; ' ' is the 33rd unprintable one: 188 + 32.
  const int32_t t_id = 83, space_id = 220;
  EXPECT_EQ(t.encode(" the"), (std::vector<int32_t>{258}));
  EXPECT_EQ(t.encode("the"), (std::vector<int32_t>{t_id, 257}));
  EXPECT_EQ(t.encode(" t<|endoftext|> the"), (std::vector<int32_t>{256, 259, 258}));
  EXPECT_EQ(t.encode(" "), (std::vector<int32_t>{space_id}));
  EXPECT_EQ(t.decode(t.encode("x <|endoftext|> the end")), "x <|endoftext|> the end");
  EXPECT_EQ(t.piece(258), " the");
}

TEST(BpeTokenizer, BadFilesAreRefusedNamingTheField) {
  auto err = [](nlohmann::json j) {
    return error_of<TokenizerFileError>([&] { BpeTokenizer::from_hf_json(j, "tok.json"); });
  };
  nlohmann::json j = gpt2_style();
  j["model"]["type"] = "WordPiece";
  EXPECT_TRUE(contains(err(j), "tok.json: model.type")) << err(j);
  j = gpt2_style();
  j["model"]["merges"][1] = "h e x";
  EXPECT_TRUE(contains(err(j), "model.merges[1]")) << err(j);
  j = gpt2_style();
  j["model"]["merges"][0] = "\xc4\xa0 q";
  EXPECT_TRUE(contains(err(j), "model.merges[0]")) << err(j);
  j = gpt2_style();
  j["model"]["vocab"]["\xc4\xa0t"] = 300;
  EXPECT_TRUE(contains(err(j), "model.vocab: id 256 has no token")) << err(j);
  j = gpt2_style();
  j["model"]["vocab"]["bad space"] = 260;
  EXPECT_TRUE(contains(err(j), "outside the byte-level alphabet")) << err(j);
  j = gpt2_style();
  j["model"]["vocab"].erase("\xc4\xa0");
  j["model"]["vocab"]["zz"] = 220;
  j["model"]["merges"] = nlohmann::json::array();
  EXPECT_TRUE(contains(err(j), "byte 0x20")) << err(j);
  // LLaMA-style (SentencePiece BPE) is refused naming the field.
  j = gpt2_style();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}};
  EXPECT_TRUE(contains(err(j), "pre_tokenizer.type \"Metaspace\"")) << err(j);
  j = gpt2_style();
  j["model"]["byte_fallback"] = true;
  EXPECT_TRUE(contains(err(j), "model.byte_fallback")) << err(j);
  j = gpt2_style();
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_TRUE(contains(err(j), "normalizer \"NFC\"")) << err(j);
  j = gpt2_style();
  j["model"]["vocab"]["he"] = -1;
  EXPECT_TRUE(contains(err(j), "model.vocab[\"he\"]")) << err(j);
  // Files: not JSON, missing.
  const fs::path dir = temp_dir("bad");
  std::ofstream(dir / "tokenizer.json") << "{\"model\": ";
  const std::string e = error_of([&] { BpeTokenizer::load(dir.string()); });
  EXPECT_TRUE(contains(e, (dir / "tokenizer.json").string())) << e;
  EXPECT_TRUE(
      contains(error_of([] { make_tokenizer("bpe:/nonexistent/dir", ""); }), "/nonexistent/dir"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace bl
