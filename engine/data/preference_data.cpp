#include "data/preference_data.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/jsonl.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"

namespace bl {

namespace {

std::string field_text(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end())
    throw std::invalid_argument(where + ": missing \"" + key +
                                "\" (each line is {\"prompt\", \"chosen\", \"rejected\"})");
  if (!it->is_string())
    throw std::invalid_argument(where + ": \"" + key + "\" must be a string, got " +
                                std::string(it->type_name()));
  return it->get<std::string>();
}

std::vector<int32_t> encode(const Tokenizer& tok, const std::string& text, const char* key,
                            const std::string& where) {
  try {
    return tok.encode(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(where + ": \"" + key + "\" cannot be encoded with the " +
                                tok.name() + " tokenizer: " + e.what());
  }
}

}  // namespace

void pack_completion(const std::vector<int32_t>& prompt, const std::vector<int32_t>& completion,
                     int64_t seq_len, int32_t* x, int32_t* y) {
  const int64_t window = seq_len + 1, nc = int64_t(completion.size());
  // The prompt keeps its end (what the completion continues), at most half the
  // window when the completion needs the rest; the completion keeps its start.
  int64_t np = std::min<int64_t>(int64_t(prompt.size()), std::max(window - nc, window / 2));
  np = std::max<int64_t>(np, prompt.empty() ? 0 : 1);
  const int64_t keep_c = std::min(nc, window - np);
  const int32_t* p = prompt.data() + (int64_t(prompt.size()) - np);
  // seq[i] for i < np + keep_c; x[t] = seq[t], y[t] = seq[t + 1] if it is a completion token.
  auto seq = [&](int64_t i) { return i < np ? p[i] : completion[size_t(i - np)]; };
  const int64_t len = np + keep_c;
  for (int64_t t = 0; t < seq_len; ++t) {
    x[t] = t < len ? seq(t) : 0;
    y[t] = (t + 1 < len && t + 1 >= np) ? seq(t + 1) : -1;
  }
}

PreferenceData::PreferenceData(std::string_view jsonl, const std::string& source,
                               const Tokenizer& tok, double val_fraction) {
  if (!(val_fraction >= 0 && val_fraction < 1))
    throw std::invalid_argument("val_fraction must be in [0, 1)");
  std::vector<PreferencePair> all;
  const char* shape = "{\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}";
  for_each_jsonl_object(
      jsonl, source, shape, [&](const nlohmann::json& j, const std::string& where) {
        const std::string prompt = field_text(j, "prompt", where);
        const std::string chosen = field_text(j, "chosen", where);
        const std::string rejected = field_text(j, "rejected", where);
        if (chosen.empty() || rejected.empty())
          throw std::invalid_argument(where + ": \"" + (chosen.empty() ? "chosen" : "rejected") +
                                      "\" is empty (a completion needs at least one token)");
        PreferencePair p{encode(tok, prompt, "prompt", where), encode(tok, chosen, "chosen", where),
                         encode(tok, rejected, "rejected", where)};
        if (p.chosen.empty() || p.rejected.empty())
          throw std::invalid_argument(where + ": a completion encodes to no tokens");
        chosen_text_ += prompt;
        chosen_text_ += chosen;
        chosen_text_ += '\n';
        all.push_back(std::move(p));
      });
  if (all.size() < 2)
    throw std::invalid_argument(source + ": " + std::to_string(all.size()) +
                                " preference pair(s); DPO needs at least 2 (one validates)");
  const int64_t n = int64_t(all.size());
  const int64_t n_val = std::clamp<int64_t>(int64_t(std::ceil(val_fraction * double(n))), 1, n - 1);
  train_.assign(std::make_move_iterator(all.begin()), std::make_move_iterator(all.end() - n_val));
  val_.assign(std::make_move_iterator(all.end() - n_val), std::make_move_iterator(all.end()));
}

PreferenceData PreferenceData::from_file(const std::string& path, const Tokenizer& tok,
                                         double val_fraction) {
  return PreferenceData(read_text_file(path), path, tok, val_fraction);
}

void pack_preference_batch(const PreferencePair* const* pairs, int64_t n, int64_t seq_len,
                           int32_t* x, int32_t* y) {
  for (int64_t i = 0; i < n; ++i) {
    pack_completion(pairs[i]->prompt, pairs[i]->chosen, seq_len, x + i * seq_len, y + i * seq_len);
    pack_completion(pairs[i]->prompt, pairs[i]->rejected, seq_len, x + (n + i) * seq_len,
                    y + (n + i) * seq_len);
  }
}

}  // namespace bl
