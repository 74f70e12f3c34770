#include "data/bpe_trainer.h"

#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "data/pretokenize.h"

namespace bl {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

struct HeapEntry {
  int64_t count;
  uint64_t key;
  // std::priority_queue pops the largest: higher count first, then smaller key.
  bool operator<(const HeapEntry& o) const {
    return count != o.count ? count < o.count : key > o.key;
  }
};

}  // namespace

BpeTokenizer train_bpe(std::string_view corpus, int64_t vocab_size, BpeTrainStats* stats) {
  if (vocab_size < 256 || vocab_size >= (int64_t(1) << 24))
    throw std::invalid_argument("[bpe trainer] vocab_size " + std::to_string(vocab_size) +
                                " must be in [256, 2^24) (256 byte tokens + merges)");
  BpeTrainStats st;
  // Distinct pieces with their frequencies, numbered by first appearance.
  std::unordered_map<std::string_view, int32_t> index;
  std::vector<int64_t> freq;
  std::vector<std::vector<int32_t>> words;
  for (std::string_view w : gpt2_pretokenize(corpus)) {
    ++st.pieces;
    auto [it, fresh] = index.try_emplace(w, int32_t(words.size()));
    if (fresh) {
      words.emplace_back(w.size());
      for (size_t i = 0; i < w.size(); ++i) words.back()[i] = static_cast<unsigned char>(w[i]);
      freq.push_back(0);
    }
    ++freq[size_t(it->second)];
  }
  st.unique_words = int64_t(words.size());

  std::unordered_map<uint64_t, int64_t> count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // may hold stale / repeated words
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      count[k] += freq[w];
      auto& list = where[k];
      if (list.empty() || list.back() != int32_t(w)) list.push_back(int32_t(w));
    }
  }
  std::priority_queue<HeapEntry> heap;
  for (const auto& [k, c] : count) heap.push({c, k});

  std::vector<std::string> tokens(256);
  for (int b = 0; b < 256; ++b) tokens[size_t(b)] = std::string(1, char(b));
  std::vector<BpeTokenizer::Merge> merges;
  std::unordered_map<std::string, int32_t> token_ids;
  for (int b = 0; b < 256; ++b) token_ids.emplace(tokens[size_t(b)], b);
  std::vector<int64_t> seen_at(words.size(), -1);  // merge that last visited a word
  std::vector<int32_t> merged;
  std::unordered_set<uint64_t> touched;
  while (int64_t(tokens.size()) < vocab_size) {
    // Lazy heap: an entry whose count fell is pushed back with the current
    // count; counts only grow for pairs with the new token, pushed below.
    bool found = false;
    HeapEntry top{};
    while (!heap.empty()) {
      top = heap.top();
      heap.pop();
      auto it = count.find(top.key);
      const int64_t cur = it == count.end() ? 0 : it->second;
      if (cur == top.count && cur > 0) {
        found = true;
        break;
      }
      if (cur > 0 && cur < top.count) heap.push({cur, top.key});
    }
    if (!found) {
      st.exhausted = true;
      break;
    }
    const int32_t a = int32_t(top.key >> 32), b = int32_t(uint32_t(top.key));
    // Two merges can spell the same bytes ("ab"+"c", "a"+"bc"): they share one
    // id, as in the tokenizers library, so encoding finds the same token.
    std::string joined = tokens[size_t(a)] + tokens[size_t(b)];
    auto [tid, fresh_token] = token_ids.try_emplace(joined, int32_t(tokens.size()));
    const int32_t id = tid->second;
    if (fresh_token) tokens.push_back(std::move(joined));
    merges.emplace_back(a, b);
    const std::vector<int32_t> affected = std::move(where[top.key]);
    where.erase(top.key);
    touched.clear();
    const int64_t m = int64_t(merges.size());
    for (int32_t w : affected) {
      if (seen_at[size_t(w)] == m) continue;
      seen_at[size_t(w)] = m;
      std::vector<int32_t>& s = words[size_t(w)];
      merged.clear();
      bool changed = false;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(id);
          i += 2;
          changed = true;
        } else {
          merged.push_back(s[i++]);
        }
      }
      if (!changed) continue;
      // Words are short: take out all their old pairs and put in the new ones.
      const int64_t f = freq[size_t(w)];
      for (size_t i = 0; i + 1 < s.size(); ++i) count[pair_key(s[i], s[i + 1])] -= f;
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        const uint64_t k = pair_key(merged[i], merged[i + 1]);
        count[k] += f;
        if (merged[i] == id || merged[i + 1] == id) {
          auto& list = where[k];
          if (list.empty() || list.back() != w) list.push_back(w);
          touched.insert(k);
        }
      }
      s.swap(merged);
    }
    count.erase(top.key);
    for (uint64_t k : touched) {
      const int64_t c = count[k];
      if (c > 0) heap.push({c, k});
    }
  }
  st.merges = int64_t(merges.size());
  if (stats) *stats = st;
  return BpeTokenizer(std::move(tokens), std::move(merges));
}

}  // namespace bl
