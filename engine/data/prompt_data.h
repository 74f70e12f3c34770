// Prompts for GRPO: a JSONL file of {"prompt": ..., "target": ...} objects
// ("target" optional: what the exact-match reward compares with), tokenized
// with the run's tokenizer and split deterministically (the last val_fraction
// of them validate).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bl {

class Tokenizer;

struct PromptItem {
  std::string text;    // the prompt
  std::string target;  // "" when the line has none
  std::vector<int32_t> ids;
};

class PromptSet {
 public:
  /// Parses `jsonl` (one object per non-blank line; `source` names it in
  /// errors). Throws std::invalid_argument "SOURCE:LINE: ..." naming the field
  /// for a malformed line, a missing or empty "prompt", a non-string field or
  /// text the tokenizer cannot encode; and for fewer than two prompts.
  PromptSet(std::string_view jsonl, const std::string& source, const Tokenizer& tok,
            double val_fraction);

  const std::vector<PromptItem>& train() const { return train_; }
  const std::vector<PromptItem>& val() const { return val_; }
  /// Whether every prompt has a target.
  bool all_have_targets() const { return all_targets_; }
  /// Every prompt and target, one per line (the run's token view).
  const std::string& text() const { return text_; }

 private:
  std::vector<PromptItem> train_, val_;
  bool all_targets_ = true;
  std::string text_;
};

}  // namespace bl
