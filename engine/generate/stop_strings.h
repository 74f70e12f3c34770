// Stop strings for streamed generation: text arrives piece by piece (one
// token's text at a time) and must stop at the first occurrence of any stop
// string, which may span several pieces. Text that could still be the start
// of a stop string is held back until it is known not to be.
#pragma once

#include <string>
#include <vector>

namespace bl {

class StopStrings {
 public:
  /// Empty strings are ignored.
  explicit StopStrings(std::vector<std::string> stops);

  /// Adds one piece; returns the text now safe to show (never any part of a
  /// stop string). After a match, stopped() is true and push returns the text
  /// before the stop string and nothing after.
  std::string push(const std::string& piece);
  /// The held-back text once generation ends without a match.
  std::string flush();
  bool stopped() const { return stopped_; }
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace bl
