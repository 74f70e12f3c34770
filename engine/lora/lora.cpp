#include "lora/lora.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include "quant/quantize.h"

namespace bl {

const std::vector<std::pair<std::string, std::string>>& lora_roles() {
  static const std::vector<std::pair<std::string, std::string>> roles = {
      {"q", "q_proj"},       {"k", "k_proj"},   {"v", "v_proj"},       {"o", "o_proj"},
      {"gate", "gate_proj"}, {"up", "up_proj"}, {"down", "down_proj"},
  };
  return roles;
}

namespace {
bool glob(const char* p, const char* s) {
  if (*p == '\0') return *s == '\0';
  if (*p == '*') return glob(p + 1, s) || (*s && glob(p, s + 1));
  return *s && *p == *s && glob(p + 1, s + 1);
}

std::string last_name(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string known_roles() {
  std::string s;
  for (auto& [role, name] : lora_roles()) s += role + " (" + name + "), ";
  return s + "attention, mlp, all, or a glob over module paths like \"layers.0.*\"";
}
}  // namespace

std::vector<std::pair<std::string, Linear*>> named_linears(Module& model) {
  std::vector<std::pair<std::string, Linear*>> out;
  model.visit_named([&](const std::string& path, Module& m) {
    if (auto* l = dynamic_cast<Linear*>(&m)) out.emplace_back(path, l);
  });
  return out;
}

std::vector<std::string> lora_target_paths(Module& model, const std::vector<std::string>& targets) {
  const auto linears = named_linears(model);
  std::vector<std::string> out;
  auto take = [&](const std::string& path) {
    if (std::find(out.begin(), out.end(), path) == out.end()) out.push_back(path);
  };
  for (const std::string& t : targets) {
    std::vector<std::string> names;  // Linear names this target selects
    bool pattern = t.find('*') != std::string::npos || t.find('.') != std::string::npos;
    if (t == "attention")
      names = {"q_proj", "k_proj", "v_proj", "o_proj"};
    else if (t == "mlp" || t == "ffn")
      names = {"gate_proj", "up_proj", "down_proj"};
    else if (t == "all")
      pattern = true;
    else if (!pattern) {
      for (auto& [role, name] : lora_roles())
        if (t == role || t == name) names = {name};
      if (names.empty())
        throw std::invalid_argument("unknown LoRA target '" + t + "': use " + known_roles());
    }
    size_t hits = 0;
    for (auto& [path, l] : linears) {
      const bool match =
          t == "all" ? true
          : pattern  ? glob(t.c_str(), path.c_str())
                     : std::find(names.begin(), names.end(), last_name(path)) != names.end();
      if (match) {
        take(path);
        ++hits;
      }
    }
    if (hits == 0)
      throw std::invalid_argument("LoRA target '" + t + "' matches no Linear layer of the model");
  }
  // Model order, so adapters and files list layers the same way every time.
  std::vector<std::string> ordered;
  for (auto& [path, l] : linears)
    if (std::find(out.begin(), out.end(), path) != out.end()) ordered.push_back(path);
  return ordered;
}

void check_lora_alpha(float alpha, const std::string& what) {
  if (!(alpha > 0.0f && alpha <= kMaxLoraAlpha))  // written so NaN fails
    throw std::invalid_argument(what + " must be a finite number in (0, 65536], got " +
                                std::to_string(alpha));
}

std::vector<std::string> apply_lora(Module& model, int64_t rank, float alpha,
                                    const std::vector<std::string>& targets, uint64_t seed) {
  check_lora_alpha(alpha, "LoRA alpha");
  const std::vector<std::string> paths = lora_target_paths(model, targets);
  for (auto& [path, l] : named_linears(model))
    if (l->lora() && std::find(paths.begin(), paths.end(), path) != paths.end())
      throw std::invalid_argument("LoRA: '" + path + "' already has an adapter");
  // Only adapters train: freeze everything except adapters attached earlier.
  std::vector<Parameter*> keep;
  for (auto& [name, p] : lora_parameters(model)) keep.push_back(p);
  for (Parameter* p : model.parameters()) p->set_trainable(false);
  for (Parameter* p : keep) p->set_trainable(true);
  Rng rng(seed);
  for (auto& [path, l] : named_linears(model))
    if (std::find(paths.begin(), paths.end(), path) != paths.end()) l->add_lora(rank, alpha, rng);
  rename_parameters(model);
  return paths;
}

void merge_lora(Module& model) {
  for (auto& [path, l] : named_linears(model)) l->merge_lora();
  for (Parameter* p : model.parameters()) p->set_trainable(true);
  rename_parameters(model);
}

void remove_lora(Module& model) {
  for (auto& [path, l] : named_linears(model)) l->remove_lora();
  for (Parameter* p : model.parameters()) p->set_trainable(true);
  rename_parameters(model);
}

std::vector<std::pair<std::string, Parameter*>> lora_parameters(Module& model) {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (auto& [path, l] : named_linears(model))
    if (const LoraAdapter* a = l->lora()) {
      out.emplace_back(path + ".lora_A.weight", a->a);
      out.emplace_back(path + ".lora_B.weight", a->b);
    }
  return out;
}

int64_t trainable_parameter_count(Module& model) {
  std::unordered_set<Parameter*> seen;
  int64_t n = 0;
  for (Parameter* p : model.parameters())
    if (p->trainable() && seen.insert(p).second) n += p->numel();
  return n;
}

int64_t total_parameter_count(Module& model) {
  return model.num_parameters();
}

}  // namespace bl
