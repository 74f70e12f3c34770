#include "data/bpe_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>

#include "data/byte_level.h"
#include "data/pretokenize.h"
#include "io/bounded_read.h"
#include "io/sha256.h"

namespace bl {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxVocab = int64_t(1) << 24;        // ModelConfig's vocab_size bound
constexpr int64_t kMaxFileBytes = int64_t(256) << 20;  // tokenizer.json size limit

uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

[[noreturn]] void fail(const std::string& what, const std::string& msg) {
  throw TokenizerFileError(what + ": " + msg);
}

std::string shown(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

BpeTokenizer::BpeTokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
                           std::vector<AddedToken> added)
    : tokens_(std::move(tokens)), merges_(std::move(merges)), added_(std::move(added)) {
  const std::string who = "[bpe tokenizer] ";
  if (tokens_.empty()) throw std::invalid_argument(who + "empty vocabulary");
  if (int64_t(tokens_.size()) > kMaxVocab)
    throw std::invalid_argument(who + "vocabulary of " + std::to_string(tokens_.size()) +
                                " tokens exceeds the limit 2^24");
  std::unordered_map<std::string_view, int32_t> by_bytes;
  by_bytes.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].empty())
      throw std::invalid_argument(who + "token " + std::to_string(i) + " is empty");
    by_bytes.emplace(tokens_[i], int32_t(i));  // a duplicate keeps the lowest id
  }
  for (int b = 0; b < 256; ++b) {
    auto it = by_bytes.find(std::string_view(std::string(1, char(b))));
    if (it == by_bytes.end()) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      throw std::invalid_argument(who + "the vocabulary has no token for byte " + hex +
                                  " (byte-level BPE needs all 256 bytes)");
    }
    byte_id_[size_t(b)] = it->second;
  }
  ranks_.reserve(merges_.size());
  const int32_t n = int32_t(tokens_.size());
  for (size_t r = 0; r < merges_.size(); ++r) {
    const auto [a, b] = merges_[r];
    if (a < 0 || a >= n || b < 0 || b >= n)
      throw std::invalid_argument(who + "merge " + std::to_string(r) +
                                  " names a token id outside [0, " + std::to_string(n) + ")");
    const std::string joined = tokens_[size_t(a)] + tokens_[size_t(b)];
    auto it = by_bytes.find(std::string_view(joined));
    if (it == by_bytes.end())
      throw std::invalid_argument(who + "merge " + std::to_string(r) + " (" +
                                  shown(byte_level::encode(tokens_[size_t(a)])) + " + " +
                                  shown(byte_level::encode(tokens_[size_t(b)])) +
                                  ") makes a token that is not in the vocabulary");
    ranks_.emplace(pair_key(a, b), std::make_pair(int32_t(r), it->second));  // first rank wins
  }
  for (const AddedToken& t : added_) {
    if (t.id < 0 || t.id >= n || t.content.empty() || tokens_[size_t(t.id)] != t.content)
      throw std::invalid_argument(who + "added token " + shown(t.content) + " (id " +
                                  std::to_string(t.id) + ") does not match the vocabulary");
  }
}

void BpeTokenizer::encode_word(std::string_view w, std::vector<int32_t>& out) const {
  if (w.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(w[0])]);
    return;
  }
  if (ignore_merges_) {
    // Only when the whole piece is a token; rare enough for a linear search.
    for (size_t i = 256; i < tokens_.size(); ++i)
      if (tokens_[i] == w) {
        out.push_back(int32_t(i));
        return;
      }
  }
  // Symbols as a linked list; a min-heap of (rank, position) candidate merges,
  // leftmost first among equal ranks (so "aaa" merges as (aa)a like GPT-2's
  // loop). O(n log n), so a megabyte-long piece cannot stall encoding.
  const int32_t n = int32_t(w.size());
  const size_t len = size_t(n);
  std::vector<int32_t> id(len), prev(len), next(len);
  for (int32_t i = 0; i < n; ++i) {
    id[size_t(i)] = byte_id_[static_cast<unsigned char>(w[size_t(i)])];
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto consider = [&](int32_t p) {
    const int32_t q = next[size_t(p)];
    if (q < 0) return;
    auto it = ranks_.find(pair_key(id[size_t(p)], id[size_t(q)]));
    if (it != ranks_.end())
      heap.push({it->second.first, p, id[size_t(p)], id[size_t(q)], it->second.second});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t q = next[size_t(c.pos)];
    // Stale: the symbol was merged away or changed since this entry was pushed.
    if (id[size_t(c.pos)] != c.left || q < 0 || id[size_t(q)] != c.right) continue;
    id[size_t(c.pos)] = c.merged;
    id[size_t(q)] = -1;
    next[size_t(c.pos)] = next[size_t(q)];
    if (next[size_t(q)] >= 0) prev[size_t(next[size_t(q)])] = c.pos;
    if (prev[size_t(c.pos)] >= 0) consider(prev[size_t(c.pos)]);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = next[size_t(i)]) out.push_back(id[size_t(i)]);
}

void BpeTokenizer::encode_plain(
    std::string_view text, std::vector<int32_t>& out,
    std::unordered_map<std::string_view, std::vector<int32_t>>& cache) const {
  for (std::string_view w : gpt2_pretokenize(text)) {
    if (w.size() > 64) {  // long pieces are rare and would bloat the cache
      encode_word(w, out);
      continue;
    }
    auto [it, fresh] = cache.try_emplace(w);
    if (fresh) encode_word(w, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  // Per call: the corpus repeats its words, and no state is shared between threads.
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;
  if (added_.empty()) {
    encode_plain(text, out, cache);
    return out;
  }
  // Added tokens split the text first (leftmost, then longest); each one's next
  // occurrence is searched again only once the text has moved past it.
  std::vector<size_t> next_at(added_.size());
  for (size_t k = 0; k < added_.size(); ++k) next_at[k] = text.find(added_[k].content);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos, best_k = 0;
    for (size_t k = 0; k < added_.size(); ++k) {
      if (next_at[k] != std::string_view::npos && next_at[k] < pos)
        next_at[k] = text.find(added_[k].content, pos);
      if (next_at[k] < best || (next_at[k] == best && best != std::string_view::npos &&
                                added_[k].content.size() > added_[best_k].content.size())) {
        best = next_at[k];
        best_k = k;
      }
    }
    if (best == std::string_view::npos) {
      encode_plain(text.substr(pos), out, cache);
      break;
    }
    encode_plain(text.substr(pos, best - pos), out, cache);
    out.push_back(added_[best_k].id);
    pos = best + added_[best_k].content.size();
  }
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (id < 0 || id >= int32_t(tokens_.size()))
      throw std::invalid_argument("[bpe tokenizer] token id " + std::to_string(id) +
                                  " is outside the vocabulary [0, " +
                                  std::to_string(tokens_.size()) + ")");
    out += tokens_[size_t(id)];
  }
  return out;
}

std::string BpeTokenizer::piece(int32_t id) const {
  return decode(std::span<const int32_t>(&id, 1));
}

// ---------------------------------------------------------------- tokenizer.json

std::string BpeTokenizer::to_hf_json_text(int indent) const {
  using oj = nlohmann::ordered_json;
  std::vector<bool> is_added(tokens_.size(), false);
  for (const AddedToken& t : added_) is_added[size_t(t.id)] = true;
  oj vocab = oj::object();
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (!is_added[i]) vocab[byte_level::encode(tokens_[i])] = i;
  // "a b" strings: read by every tokenizers version (byte-level tokens never
  // hold a space: it is mapped to 'Ġ').
  oj merges = oj::array();
  for (const auto& [a, b] : merges_)
    merges.push_back(byte_level::encode(tokens_[size_t(a)]) + " " +
                     byte_level::encode(tokens_[size_t(b)]));
  oj added = oj::array();
  for (const AddedToken& t : added_)
    added.push_back({{"id", t.id},
                     {"content", t.content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", t.special}});
  const oj byte_level = {{"type", "ByteLevel"},
                         {"add_prefix_space", false},
                         {"trim_offsets", true},
                         {"use_regex", true}};
  oj doc = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", byte_level},
            {"post_processor", byte_level},
            {"decoder", byte_level},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", ignore_merges_},
              {"vocab", vocab},
              {"merges", merges}}}};
  return doc.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
}

std::string BpeTokenizer::save(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("[bpe tokenizer] cannot create " + dir + ": " + ec.message());
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << to_hf_json_text(2) << '\n';
    if (!f.flush()) throw std::runtime_error("[bpe tokenizer] cannot write " + tmp);
  }
  fs::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("[bpe tokenizer] cannot write " + path + ": " + ec.message());
  return path;
}

nlohmann::json BpeTokenizer::to_json() const {
  return {{"type", "bpe"},
          {"vocab_size", tokens_.size()},
          {"source", source_},
          {"sha256", source_sha256_},
          {"tokenizer_json", nlohmann::json::parse(to_hf_json_text())}};
}

namespace {

// The pre-tokenizer must be (or contain) ByteLevel; a ByteLevel that adds a
// prefix space changes every encoding and is refused rather than ignored.
void check_pre_tokenizer(const nlohmann::json& p, const std::string& what, const std::string& field,
                         bool& byte_level_seen) {
  if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
    fail(what, field + " must be an object with a string \"type\"");
  const std::string type = p["type"].get<std::string>();
  if (type == "ByteLevel") {
    if (p.contains("add_prefix_space") && p["add_prefix_space"] == true)
      fail(what, field + ".add_prefix_space is true: not supported (GPT-2 style files have false)");
    byte_level_seen = true;
  } else if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
      fail(what, field + ".pretokenizers must be an array");
    for (size_t i = 0; i < p["pretokenizers"].size(); ++i)
      check_pre_tokenizer(p["pretokenizers"][i], what,
                          field + ".pretokenizers[" + std::to_string(i) + "]", byte_level_seen);
  } else if (type == "Split") {
    // Llama 3 / Qwen put their own split pattern before ByteLevel; GPT-2's is
    // applied instead (ids stay valid, boundaries may differ; README).
  } else if (type == "Metaspace") {
    fail(what, field +
                   ".type \"Metaspace\": SentencePiece-style BPE (LLaMA 1/2, Mistral) is not "
                   "supported; only byte-level BPE (pre_tokenizer ByteLevel, GPT-2 style)");
  } else {
    fail(what, field + ".type \"" + type + "\" is not supported (byte-level BPE needs ByteLevel)");
  }
}

int32_t id_field(const nlohmann::json& v, const std::string& what, const std::string& field) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxVocab)
    fail(what, field + " must be an integer id in [0, 2^24)");
  return int32_t(v.get<int64_t>());
}

}  // namespace

BpeTokenizer BpeTokenizer::from_hf_json(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) fail(what, "not a JSON object (a Hugging Face tokenizer.json)");
  if (!j.contains("model") || !j["model"].is_object()) fail(what, "needs an object \"model\"");
  const nlohmann::json& m = j["model"];
  if (m.contains("type") && m["type"] != "BPE")
    fail(what, "model.type " + m["type"].dump() + " is not supported (only \"BPE\")");
  if (m.contains("byte_fallback") && m["byte_fallback"] == true)
    fail(what,
         "model.byte_fallback is true: SentencePiece-style BPE (LLaMA 1/2, Mistral) is not "
         "supported; only byte-level BPE (GPT-2 style)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && m[k] != "")
      fail(what, std::string("model.") + k + " is set: not supported by byte-level BPE");
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const auto& nz = j["normalizer"];
    fail(what, "normalizer " +
                   (nz.is_object() && nz.contains("type") ? nz["type"].dump() : std::string("")) +
                   " is not supported (GPT-2 style byte-level BPE has none)");
  }
  bool byte_level_seen = false;
  if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null())
    fail(what, "pre_tokenizer is missing: byte-level BPE needs {\"type\": \"ByteLevel\"}");
  check_pre_tokenizer(j["pre_tokenizer"], what, "pre_tokenizer", byte_level_seen);
  if (!byte_level_seen) fail(what, "pre_tokenizer has no ByteLevel step");
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    const auto& d = j["decoder"];
    if (!d.is_object() || d.value("type", std::string()) != "ByteLevel")
      fail(what, "decoder.type must be \"ByteLevel\" (got " +
                     (d.is_object() && d.contains("type") ? d["type"].dump() : d.dump()) + ")");
  }

  if (!m.contains("vocab") || !m["vocab"].is_object())
    fail(what, "model.vocab must be an object token -> id");
  std::vector<std::string> tokens;
  std::vector<bool> filled;
  auto put = [&](int32_t id, std::string bytes, const std::string& field) {
    if (size_t(id) >= tokens.size()) {
      tokens.resize(size_t(id) + 1);
      filled.resize(size_t(id) + 1, false);
    }
    if (filled[size_t(id)] && tokens[size_t(id)] != bytes)
      fail(what, field + ": id " + std::to_string(id) + " is used by two different tokens");
    tokens[size_t(id)] = std::move(bytes);
    filled[size_t(id)] = true;
  };
  std::unordered_map<std::string, int32_t> vocab_ids;
  vocab_ids.reserve(m["vocab"].size());
  for (const auto& [tok, v] : m["vocab"].items()) {
    const std::string field = "model.vocab[" + shown(tok) + "]";
    const int32_t id = id_field(v, what, field);
    const auto bytes = byte_level::decode(tok);
    if (!bytes || bytes->empty())
      fail(what, field + ": the token has characters outside the byte-level alphabet");
    put(id, *bytes, field);
    vocab_ids.emplace(tok, id);
  }
  std::vector<AddedToken> added;
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) fail(what, "added_tokens must be an array");
    for (size_t i = 0; i < j["added_tokens"].size(); ++i) {
      const auto& a = j["added_tokens"][i];
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object() || !a.contains("id") || !a.contains("content") ||
          !a["content"].is_string() || a["content"].get<std::string>().empty())
        fail(what, field + " needs an integer \"id\" and a non-empty string \"content\"");
      AddedToken t;
      t.id = id_field(a["id"], what, field + ".id");
      t.content = a["content"].get<std::string>();
      t.special = a.value("special", true);
      put(t.id, t.content, field);
      added.push_back(std::move(t));
    }
  }
  for (size_t i = 0; i < filled.size(); ++i)
    if (!filled[i])
      fail(what, "model.vocab: id " + std::to_string(i) + " has no token (ids must be 0.." +
                     std::to_string(filled.size() - 1) + " without gaps)");

  if (!m.contains("merges") || !m["merges"].is_array()) fail(what, "model.merges must be an array");
  std::vector<Merge> merges;
  merges.reserve(m["merges"].size());
  for (size_t i = 0; i < m["merges"].size(); ++i) {
    const auto& e = m["merges"][i];
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (e.is_string()) {  // "a b" (tokenizers < 0.20)
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() ||
          s.find(' ', sp + 1) != std::string::npos)
        fail(what, field + " " + shown(s) + " must be two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();  // ["a", "b"] (tokenizers >= 0.20)
      b = e[1].get<std::string>();
    } else {
      fail(what, field + " must be a string \"a b\" or a pair [\"a\", \"b\"]");
    }
    auto ia = vocab_ids.find(a), ib = vocab_ids.find(b);
    if (ia == vocab_ids.end() || ib == vocab_ids.end())
      fail(what, field + ": " + shown(ia == vocab_ids.end() ? a : b) + " is not in model.vocab");
    if (!vocab_ids.count(a + b))
      fail(what, field + ": the merged token " + shown(a + b) + " is not in model.vocab");
    merges.emplace_back(ia->second, ib->second);
  }
  try {
    BpeTokenizer t(std::move(tokens), std::move(merges), std::move(added));
    t.ignore_merges_ = m.value("ignore_merges", false);
    return t;
  } catch (const TokenizerFileError&) {
    throw;
  } catch (const std::invalid_argument& e) {
    fail(what, e.what());
  }
}

BpeTokenizer BpeTokenizer::from_record(const nlohmann::json& j) {
  const std::string what = "[tokenizer] stored bpe tokenizer";
  if (!j.contains("tokenizer_json"))
    fail(what, "needs \"tokenizer_json\" (the Hugging Face document)");
  BpeTokenizer t = from_hf_json(j["tokenizer_json"], what + " tokenizer_json");
  if (j.contains("source") && j["source"].is_string()) t.source_ = j["source"].get<std::string>();
  if (j.contains("sha256") && j["sha256"].is_string())
    t.source_sha256_ = j["sha256"].get<std::string>();
  return t;
}

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "tokenizer.json").string();
  const std::string text = read_regular_file(file, kMaxFileBytes);  // names the file
  check_json_depth(text, file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw TokenizerFileError(file + ": not valid JSON (" + e.what() + ")");
  }
  BpeTokenizer t = from_hf_json(j, file);
  t.source_ = fs::absolute(file).lexically_normal().string();
  t.source_sha256_ = sha256_hex(text);
  return t;
}

}  // namespace bl
