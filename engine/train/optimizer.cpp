#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "tensor/parallel.h"
#include "train/optimizers/adafactor.h"
#include "train/optimizers/adamw.h"
#include "train/optimizers/lion.h"
#include "train/optimizers/sgd.h"

namespace bl {

Optimizer::Optimizer(std::vector<Parameter*> params, const OptimizerOptions& opt) : opt_(opt) {
  // Drop duplicates (tied weights) keeping first-seen order; reject name clashes,
  // which would make checkpoint state ambiguous.
  std::unordered_set<Parameter*> seen;
  std::unordered_set<std::string> names;
  for (Parameter* p : params) {
    if (!p) throw std::invalid_argument("[optimizer] null parameter");
    if (!seen.insert(p).second) continue;
    if (!names.insert(p->name()).second)
      throw std::invalid_argument("[optimizer] two different parameters are named \"" + p->name() +
                                  "\"; state names must be unique");
    params_.push_back(p);
  }
  if (!(opt.weight_decay >= 0.0f) || !std::isfinite(opt.weight_decay))
    throw std::invalid_argument("[optimizer] weight_decay must be finite and >= 0");
  slots_.resize(params_.size());
  param_steps_.assign(params_.size(), 0);
}

float* Optimizer::add_state(size_t i, const std::string& slot, int64_t n) {
  slots_[i].push_back({params_[i]->name() + "." + slot, Buffer(n)});
  return slots_[i].back().buf.data();
}

void Optimizer::step(float lr) {
  if (!std::isfinite(lr) || lr < 0.0f)
    throw std::invalid_argument("[optimizer] learning rate must be finite and >= 0, got " +
                                std::to_string(lr));
  std::vector<size_t>& active = active_;  // member: no allocation after the first step
  active.clear();
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i]->trainable() && params_[i]->grad()) active.push_back(i);
  for (size_t i : active) ++param_steps_[i];
  ++steps_;
  // Parameters with their own learning-rate multiplier (μP) are updated in
  // groups of equal scale; the common case is one group at scale 1.
  bool uniform = true;
  for (size_t i : active) uniform = uniform && params_[i]->lr_scale() == 1.0f;
  if (uniform) {
    update(lr, active);
    return;
  }
  scales_.clear();
  for (size_t i : active)
    if (std::find(scales_.begin(), scales_.end(), params_[i]->lr_scale()) == scales_.end())
      scales_.push_back(params_[i]->lr_scale());
  for (float s : scales_) {
    group_.clear();
    for (size_t i : active)
      if (params_[i]->lr_scale() == s) group_.push_back(i);
    update(lr * s, group_);
  }
}

void Optimizer::zero_grad() {
  for (Parameter* p : params_) p->zero_grad();
}

void Optimizer::run_chunks(void (*fn)(void*, const Chunk&), void* ctx) {
  const Chunk* c = chunks_.data();
  parallel_for(
      int64_t(chunks_.size()), [&](int64_t k) { fn(ctx, c[k]); }, 4);
}

NamedBuffers Optimizer::state() const {
  NamedBuffers out;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const Slot& s : slots_[i])
      out.emplace_back(s.name, std::vector<float>(s.buf.data(), s.buf.data() + s.buf.size()));
    out.emplace_back(params_[i]->name() + ".step", std::vector<float>{float(param_steps_[i])});
  }
  return out;
}

void Optimizer::load_state(const NamedBuffers& state, int64_t steps_taken) {
  if (steps_taken < 0) throw std::invalid_argument("[optimizer] negative steps_taken");
  std::unordered_map<std::string, const std::vector<float>*> by_name;
  for (const auto& [n, v] : state)
    if (!by_name.emplace(n, &v).second)
      throw std::invalid_argument("[optimizer] state buffer \"" + n + "\" appears twice");
  auto take = [&](const std::string& n, int64_t size) -> const std::vector<float>& {
    auto it = by_name.find(n);
    if (it == by_name.end())
      throw std::invalid_argument("[optimizer] " + name() + " state has no buffer \"" + n + "\"");
    if (int64_t(it->second->size()) != size)
      throw std::invalid_argument("[optimizer] state buffer \"" + n + "\" has " +
                                  std::to_string(it->second->size()) + " floats, expected " +
                                  std::to_string(size));
    const auto& v = *it->second;
    by_name.erase(it);
    return v;
  };
  // Validate everything before touching any buffer, so a failed load changes nothing.
  std::vector<const std::vector<float>*> src;
  std::vector<int64_t> steps(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const Slot& s : slots_[i]) src.push_back(&take(s.name, s.buf.size()));
    const float st = take(params_[i]->name() + ".step", 1)[0];
    if (!(st >= 0.0f) || st != std::floor(st))
      throw std::invalid_argument("[optimizer] bad step count for " + params_[i]->name());
    steps[i] = int64_t(st);
  }
  if (!by_name.empty())
    throw std::invalid_argument("[optimizer] " + name() + " state has an unknown buffer \"" +
                                by_name.begin()->first + "\"");
  size_t k = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    for (Slot& s : slots_[i]) {
      const auto& v = *src[k++];
      if (!v.empty()) std::memcpy(s.buf.data(), v.data(), sizeof(float) * v.size());
    }
  param_steps_ = steps;
  steps_ = steps_taken;
}

int64_t Optimizer::state_floats() const {
  int64_t n = 0;
  for (const auto& ss : slots_)
    for (const Slot& s : ss) n += s.buf.size();
  return n;
}

std::vector<std::string> optimizer_names() {
  return {"adamw", "lion", "adafactor", "sgd"};
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<Parameter*> params,
                                          const OptimizerOptions& opt) {
  if (name == "adamw") return std::make_unique<AdamW>(std::move(params), opt);
  if (name == "lion") return std::make_unique<Lion>(std::move(params), opt);
  if (name == "adafactor") return std::make_unique<Adafactor>(std::move(params), opt);
  if (name == "sgd") return std::make_unique<SGD>(std::move(params), opt);
  std::string known;
  for (const auto& n : optimizer_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("[optimizer] unknown optimizer \"" + std::string(name) +
                              "\" (known: " + known + ")");
}

}  // namespace bl
