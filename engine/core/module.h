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
  /// Distinct parameter elements (a tied tensor counts once), plus the elements of
  /// weights held quantized (quantized_elements() of every module).
  int64_t num_parameters();
  /// Elements of weights this module holds quantized instead of as Parameters.
  virtual int64_t quantized_elements() const { return 0; }
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
  /// Visits this module and every descendant with its dotted path ("" for this one).
  template <class F>
  void visit_named(F&& f, const std::string& path = "") {
    f(path, *this);
    for (auto& c : children_)
      c.second->visit_named(f, path.empty() ? c.first : path + "." + c.first);
  }

 protected:
  Parameter* add_parameter(const std::string& name, const Shape& shape, Init init = Init::kNormal);
  /// Removes an own parameter and hands it back (quantization replaces a weight,
  /// merging drops an adapter); null if there is none of that name.
  std::unique_ptr<Parameter> remove_parameter(const std::string& name);
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
