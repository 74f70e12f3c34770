#include "core/module.h"

#include <unordered_set>

namespace bl {

Parameter* Module::add_parameter(const std::string& name, const Shape& shape, Init init) {
  params_.emplace_back(name, std::make_unique<Parameter>(name, shape));
  params_.back().second->set_init_kind(init);
  return params_.back().second.get();
}

std::unique_ptr<Parameter> Module::remove_parameter(const std::string& name) {
  for (auto it = params_.begin(); it != params_.end(); ++it)
    if (it->first == name) {
      std::unique_ptr<Parameter> p = std::move(it->second);
      params_.erase(it);
      return p;
    }
  return nullptr;
}

void Module::add_shared_parameter(const std::string& name, Parameter* p) {
  shared_.emplace_back(name, p);
}

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, Parameter*>>& out) {
  for (auto& [n, p] : params_) out.emplace_back(prefix + n, p.get());
  for (auto& [n, c] : children_) c->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Parameter*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  collect("", out);
  return out;
}

std::vector<Parameter*> Module::parameters() {
  std::vector<Parameter*> out;
  for (auto& [n, p] : named_parameters()) out.push_back(p);
  return out;
}

int64_t Module::num_parameters() {
  std::unordered_set<Parameter*> seen;
  int64_t n = 0;
  for (Parameter* p : parameters())
    if (seen.insert(p).second) n += p->numel();
  visit([&](Module& m) { n += m.quantized_elements(); });
  return n;
}

}  // namespace bl
