// Module: a node in the model tree that owns Parameters and child modules,
// and names them with dotted paths ("blocks.0.attention.q_proj.weight").
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/parameter.h"

namespace bl {

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  std::vector<std::pair<std::string, Parameter*>> named_parameters();
  std::vector<Parameter*> parameters();
  /// Distinct parameter elements (a tied tensor counts once).
  int64_t num_parameters();
  /// Called by Model::init_weights for parameters marked Init::kCustom.
  virtual void init_custom(Rng& rng) {}
  /// Called by the trainer after each optimizer step (state updated outside
  /// gradient descent, e.g. aux-loss-free MoE router bias from observed load).
  virtual void after_optimizer_step() {}
  /// Visits this module and every descendant.
  template <class F>
  void visit(F&& f) {
    f(*this);
    for (auto& c : children_) c.second->visit(f);
  }

 protected:
  Parameter* add_parameter(const std::string& name, const Shape& shape, Init init = Init::kNormal);
  /// Registers a parameter owned elsewhere (weight tying); not counted twice.
  void add_shared_parameter(const std::string& name, Parameter* p);
  template <class M>
  M* add_module(const std::string& name, std::unique_ptr<M> m) {
    M* raw = m.get();
    children_.emplace_back(name, std::move(m));
    return raw;
  }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Parameter*>>& out);
  std::vector<std::pair<std::string, std::unique_ptr<Parameter>>> params_;
  std::vector<std::pair<std::string, Parameter*>> shared_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

}  // namespace bl
