// Rewards for GRPO, named by a spec string:
//   exact           1 if the completion, up to its first newline, equals the
//                   prompt's target, else 0
//   regex:PATTERN   1 if the completion contains a match (ECMAScript), else 0
//   length:N        1 - |L - N| / N, at least 0, L the completion's characters
//                   up to its first newline
//   cmd:COMMAND     the number COMMAND prints, run by /bin/sh with the
//                   completion on stdin and BLOCKLAB_PROMPT / BLOCKLAB_TARGET
//                   in its environment
#pragma once

#include <regex>
#include <string>

namespace bl {

class Reward {
 public:
  /// std::invalid_argument naming the spec and the forms it may take.
  static Reward parse(const std::string& spec);
  /// The reward of `completion` to `prompt` (whose target is `target`).
  /// std::runtime_error naming the command when cmd: fails or prints no number.
  double operator()(const std::string& prompt, const std::string& completion,
                    const std::string& target) const;
  const std::string& spec() const { return spec_; }
  /// exact compares with the prompts' targets: every prompt needs one.
  bool needs_target() const { return kind_ == Kind::kExact; }

 private:
  enum class Kind { kExact, kRegex, kLength, kCommand };
  Kind kind_ = Kind::kExact;
  std::string spec_, arg_;
  std::regex regex_;
  double length_ = 0;
};

}  // namespace bl
