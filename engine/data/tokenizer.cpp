#include "data/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/bpe_tokenizer.h"
#include "data/utf8.h"

namespace bl {

namespace {

[[noreturn]] void bad_id(const char* who, int32_t id, int64_t vocab) {
  throw std::invalid_argument(std::string("[") + who + "] token id " + std::to_string(id) +
                              " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

[[noreturn]] void bad_utf8(const char* who, size_t offset) {
  throw std::invalid_argument(std::string("[") + who + "] invalid UTF-8 at byte offset " +
                              std::to_string(offset));
}

}  // namespace

// ---------------------------------------------------------------- CharTokenizer

CharTokenizer CharTokenizer::from_text(std::string_view corpus) {
  // Mark present code points: ASCII in a table, the rest collected and deduplicated.
  bool ascii_seen[128] = {};
  std::vector<char32_t> other;
  size_t pos = 0;
  char32_t cp;
  while (pos < corpus.size()) {
    const auto b = static_cast<unsigned char>(corpus[pos]);
    if (b < 0x80) {
      ascii_seen[b] = true;
      ++pos;
      continue;
    }
    if (!utf8::next(corpus, pos, cp)) bad_utf8("char tokenizer", pos);
    other.push_back(cp);
  }
  std::vector<char32_t> vocab;
  for (char32_t c = 0; c < 128; ++c)
    if (ascii_seen[c]) vocab.push_back(c);
  std::sort(other.begin(), other.end());
  other.erase(std::unique(other.begin(), other.end()), other.end());
  vocab.insert(vocab.end(), other.begin(), other.end());
  if (vocab.empty()) throw std::invalid_argument("[char tokenizer] the corpus is empty");
  return CharTokenizer(std::move(vocab));
}

CharTokenizer::CharTokenizer(std::vector<char32_t> code_points)
    : vocab_(std::move(code_points)), ascii_(128, -1) {
  if (vocab_.empty()) throw std::invalid_argument("[char tokenizer] empty vocabulary");
  for (size_t i = 0; i < vocab_.size(); ++i) {
    if (!utf8::is_scalar(vocab_[i]))
      throw std::invalid_argument("[char tokenizer] vocabulary entry " + std::to_string(i) +
                                  " is not a Unicode scalar value");
    if (i > 0 && vocab_[i] <= vocab_[i - 1])
      throw std::invalid_argument(
          "[char tokenizer] vocabulary must be strictly increasing code points (entry " +
          std::to_string(i) + ")");
    if (vocab_[i] < 128) ascii_[vocab_[i]] = int32_t(i);
  }
}

int32_t CharTokenizer::id_of(char32_t cp) const {
  if (cp < 128) return ascii_[cp];
  auto it = std::lower_bound(vocab_.begin(), vocab_.end(), cp);
  return (it != vocab_.end() && *it == cp) ? int32_t(it - vocab_.begin()) : -1;
}

std::vector<int32_t> CharTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  size_t pos = 0;
  char32_t cp;
  while (pos < text.size()) {
    const size_t at = pos;
    if (!utf8::next(text, pos, cp)) bad_utf8("char tokenizer", at);
    const int32_t id = id_of(cp);
    if (id < 0)
      throw std::invalid_argument("[char tokenizer] character " + utf8::describe(cp) +
                                  " at byte offset " + std::to_string(at) +
                                  " is not in the vocabulary of " + std::to_string(vocab_.size()) +
                                  " symbols");
    ids.push_back(id);
  }
  return ids;
}

std::string CharTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= int32_t(vocab_.size())) bad_id("char tokenizer", id, vocab_size());
    utf8::append(out, vocab_[size_t(id)]);
  }
  return out;
}

std::string CharTokenizer::piece(int32_t id) const {
  return decode(std::span<const int32_t>(&id, 1));
}

nlohmann::json CharTokenizer::to_json() const {
  std::vector<uint32_t> cps(vocab_.begin(), vocab_.end());
  return {{"type", "char"}, {"vocab_size", vocab_.size()}, {"code_points", cps}};
}

// ---------------------------------------------------------------- ByteTokenizer

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] > 255) bad_id("byte tokenizer", ids[i], 256);
    out[i] = char(static_cast<unsigned char>(ids[i]));
  }
  return out;
}

std::string ByteTokenizer::piece(int32_t id) const {
  return decode(std::span<const int32_t>(&id, 1));
}

nlohmann::json ByteTokenizer::to_json() const {
  return {{"type", "byte"}, {"vocab_size", 256}};
}

// ---------------------------------------------------------------- factories

std::vector<std::string> tokenizer_names() {
  return {"char", "byte", "bpe:DIR"};
}

std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw std::invalid_argument("[tokenizer] JSON needs a string field \"type\"");
  const std::string type = j["type"].get<std::string>();
  std::unique_ptr<Tokenizer> tok;
  if (type == "byte") {
    tok = std::make_unique<ByteTokenizer>();
  } else if (type == "char") {
    if (!j.contains("code_points") || !j["code_points"].is_array())
      throw std::invalid_argument("[tokenizer] char tokenizer JSON needs \"code_points\"");
    std::vector<char32_t> cps;
    for (const auto& v : j["code_points"]) {
      if (!v.is_number_unsigned())
        throw std::invalid_argument("[tokenizer] code_points must be non-negative integers");
      cps.push_back(char32_t(v.get<uint32_t>()));
    }
    tok = std::make_unique<CharTokenizer>(std::move(cps));
  } else if (type == "bpe") {
    tok = std::make_unique<BpeTokenizer>(BpeTokenizer::from_record(j));
  } else {
    throw std::invalid_argument("[tokenizer] unknown tokenizer type \"" + type +
                                "\" (known: char, byte, bpe)");
  }
  if (j.contains("vocab_size") &&
      (!j["vocab_size"].is_number_integer() || j["vocab_size"].get<int64_t>() != tok->vocab_size()))
    throw std::invalid_argument("[tokenizer] vocab_size " + j["vocab_size"].dump() +
                                " does not match the stored vocabulary (" +
                                std::to_string(tok->vocab_size()) + ")");
  return tok;
}

std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name, std::string_view corpus) {
  if (name == "char") return std::make_unique<CharTokenizer>(CharTokenizer::from_text(corpus));
  if (name == "byte") return std::make_unique<ByteTokenizer>();
  if (name.substr(0, 4) == "bpe:") {
    if (name.size() == 4)
      throw std::invalid_argument(
          "[tokenizer] bpe: needs a directory with tokenizer.json (bpe:DIR)");
    return std::make_unique<BpeTokenizer>(BpeTokenizer::load(std::string(name.substr(4))));
  }
  throw std::invalid_argument("[tokenizer] unknown tokenizer \"" + std::string(name) +
                              "\" (known: char, byte, bpe:DIR)");
}

}  // namespace bl
