#include "args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iterator>

namespace bl::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_opts,
           const std::set<std::string>& flag_opts) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool has_inline = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    if (flag_opts.count(name)) {
      if (has_inline) throw UsageError("option --" + name + " takes no value");
      flags_.insert(name);
    } else if (value_opts.count(name)) {
      if (!has_inline) {
        if (i + 1 >= argv.size()) throw UsageError("option --" + name + " needs a value");
        value = argv[++i];
      }
      values_.emplace(name, value);
    } else {
      throw UsageError("unknown option --" + name);
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  // Equal keys keep their insertion order: the last occurrence wins.
  auto [lo, hi] = values_.equal_range(name);
  if (lo == hi) return std::nullopt;
  return std::prev(hi)->second;
}

std::vector<std::string> Args::all(const std::string& name) const {
  std::vector<std::string> out;
  auto [lo, hi] = values_.equal_range(name);
  for (auto it = lo; it != hi; ++it) out.push_back(it->second);
  return out;
}

std::optional<int64_t> Args::get_int(const std::string& name, int64_t min_value) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    throw UsageError("--" + name + " must be an integer, got '" + *v + "'");
  if (x < min_value)
    throw UsageError("--" + name + " must be >= " + std::to_string(min_value) + ", got " + *v);
  return int64_t(x);
}

std::optional<double> Args::get_double(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(x))
    throw UsageError("--" + name + " must be a number, got '" + *v + "'");
  return x;
}

}  // namespace bl::cli
