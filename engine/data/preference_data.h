// Preference pairs for DPO: a JSONL file of {"prompt", "chosen", "rejected"}
// objects, tokenized with the run's tokenizer and split deterministically
// (the last val_fraction of the pairs validate), packed into padded batches
// whose targets score only the completion's tokens.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bl {

class Tokenizer;

struct PreferencePair {
  std::vector<int32_t> prompt, chosen, rejected;
};

class PreferenceData {
 public:
  /// Parses `jsonl` (one object per non-blank line; `source` names it in errors)
  /// and tokenizes every pair. Throws std::invalid_argument "SOURCE:LINE: ..."
  /// naming the field for a malformed line, a missing or non-string field, an
  /// empty completion or text the tokenizer cannot encode; and for fewer than
  /// two pairs (one must validate). val_fraction in [0, 1): at least one pair
  /// validates.
  PreferenceData(std::string_view jsonl, const std::string& source, const Tokenizer& tok,
                 double val_fraction);
  /// read_text_file(path) + the constructor above.
  static PreferenceData from_file(const std::string& path, const Tokenizer& tok,
                                  double val_fraction);

  const std::vector<PreferencePair>& train() const { return train_; }
  const std::vector<PreferencePair>& val() const { return val_; }
  /// Every prompt + chosen completion, one per line: the "supervised" view of
  /// the pairs (the text a run's token dataset and memory estimate are built on).
  const std::string& chosen_text() const { return chosen_text_; }

 private:
  std::vector<PreferencePair> train_, val_;
  std::string chosen_text_;
};

/// One row of seq_len: prompt + completion, x the sequence (0-padded), y the
/// next token where it is a completion token and -1 elsewhere. A sequence
/// longer than seq_len + 1 keeps the prompt's last tokens (at most half the
/// window when the completion needs the rest) and the completion's first.
void pack_completion(const std::vector<int32_t>& prompt, const std::vector<int32_t>& completion,
                     int64_t seq_len, int32_t* x, int32_t* y);

/// Packs `n` pairs into 2n rows of seq_len: rows [0, n) prompt + chosen, rows
/// [n, 2n) prompt + rejected, each as pack_completion. x, y hold 2n * seq_len
/// ints; nothing is allocated.
void pack_preference_batch(const PreferencePair* const* pairs, int64_t n, int64_t seq_len,
                           int32_t* x, int32_t* y);

}  // namespace bl
