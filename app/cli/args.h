// Minimal command-line parsing for blocklab-cli: "--name value", "--flag",
// and repeated options. Unknown or malformed options are errors.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace bl::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  /// value_opts take a value, flag_opts do not; anything else is a UsageError.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_opts,
       const std::set<std::string>& flag_opts);
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  /// Value of a single-valued option; when repeated, the last one wins.
  std::optional<std::string> get(const std::string& name) const;
  std::vector<std::string> all(const std::string& name) const;
  std::optional<int64_t> get_int(const std::string& name, int64_t min_value) const;
  std::optional<double> get_double(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::multimap<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positional_;
};

}  // namespace bl::cli
