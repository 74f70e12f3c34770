// Name -> factory tables for block components. A component is a file pair
// plus one line in components.cpp.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace bl {

struct BlockConfig;

template <class Base>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Base>(const BlockConfig&)>;
  struct Entry {
    Factory make;
    std::string summary;  // one line for `models list` and the GUI
    /// Component-specific BlockConfig keys it reads (beyond d_model, n_heads,
    /// d_ff, bias, ...); the composer shows exactly these for it.
    std::vector<std::string> fields;
  };

  explicit Registry(std::string slot) : slot_(std::move(slot)) {}
  void add(const std::string& name, Factory f, std::string summary,
           std::vector<std::string> fields = {}) {
    entries_[name] = Entry{std::move(f), std::move(summary), std::move(fields)};
  }
  /// True when component `name` lists `field` among its own fields.
  bool uses_field(const std::string& name, const std::string& field) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) return false;
    for (const std::string& f : it->second.fields)
      if (f == field) return true;
    return false;
  }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  /// Sorted names.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (auto& e : entries_) n.push_back(e.first);
    return n;
  }
  const Entry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw std::invalid_argument(unknown_message(name));
    return it->second;
  }
  std::unique_ptr<Base> create(const std::string& name, const BlockConfig& cfg) const {
    return entry(name).make(cfg);
  }
  /// "unknown attention 'foo'; known: gqa, mha"
  std::string unknown_message(const std::string& name) const {
    std::string msg = "unknown " + slot_ + " '" + name + "'; known: ";
    bool first = true;
    for (auto& e : entries_) {
      msg += (first ? "" : ", ") + e.first;
      first = false;
    }
    return msg;
  }
  const std::string& slot() const { return slot_; }

 private:
  std::string slot_;
  std::map<std::string, Entry> entries_;
};

}  // namespace bl
