// Auxiliary objectives and diagnostics that components emit during a forward
// pass (MoE load-balancing and router z-losses, per-expert load, MTP losses).
// The model clears the current thread's collector at the start of each
// forward; LanguageModel::loss adds every weighted loss to the objective and
// the trainer reports every value as a named metric.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace bl {

class AuxOutputs {
 public:
  struct Loss {
    std::string name;  // metric name, e.g. "moe_aux_loss"
    Tensor value;      // scalar, unweighted
    float weight = 0;  // its coefficient in the training objective
  };
  struct Metric {
    std::string name;  // e.g. "moe_load/layer3/expert0"
    double value = 0;
  };

  /// Forgets the entries but keeps their storage (names included), so a warm
  /// training step emits its losses and metrics without allocating.
  void clear() {
    n_losses_ = 0;
    n_metrics_ = 0;
  }
  /// Adds weight * loss (a scalar tensor) to the objective; reported as `name`
  /// (values of the same name from several layers are summed).
  void add_loss(std::string_view name, const Tensor& loss, float weight) {
    if (n_losses_ == losses_.size()) losses_.emplace_back();
    Loss& l = losses_[n_losses_++];
    l.name.assign(name);
    l.value = loss;
    l.weight = weight;
  }
  /// A diagnostic value (not differentiated).
  void add_metric(std::string_view name, double value) {
    if (n_metrics_ == metrics_.size()) metrics_.emplace_back();
    Metric& m = metrics_[n_metrics_++];
    m.name.assign(name);
    m.value = value;
  }
  std::span<const Loss> losses() const { return {losses_.data(), n_losses_}; }
  std::span<const Metric> metrics() const { return {metrics_.data(), n_metrics_}; }

 private:
  std::vector<Loss> losses_;
  std::vector<Metric> metrics_;
  size_t n_losses_ = 0, n_metrics_ = 0;
};

/// The calling thread's collector (each thread runs its own forward passes).
AuxOutputs& aux_outputs();

}  // namespace bl
