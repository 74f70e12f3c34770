// Auxiliary objectives and diagnostics that components emit during a forward
// pass (MoE load-balancing and router z-losses, per-expert load, MTP losses).
// The model clears the current thread's collector at the start of each
// forward; LanguageModel::loss adds every weighted loss to the objective and
// the trainer reports every value as a named metric.
#pragma once

#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace bl {

class AuxOutputs {
 public:
  struct Loss {
    std::string name;  // metric name, e.g. "moe_aux_loss"
    Tensor value;      // scalar, unweighted
    float weight;      // its coefficient in the training objective
  };
  struct Metric {
    std::string name;  // e.g. "moe_load/layer3/expert0"
    double value;
  };

  void clear() {
    losses_.clear();
    metrics_.clear();
  }
  /// Adds weight * loss (a scalar tensor) to the objective; reported as `name`
  /// (values of the same name from several layers are summed).
  void add_loss(std::string name, const Tensor& loss, float weight) {
    losses_.push_back({std::move(name), loss, weight});
  }
  /// A diagnostic value (not differentiated).
  void add_metric(std::string name, double value) { metrics_.push_back({std::move(name), value}); }
  const std::vector<Loss>& losses() const { return losses_; }
  const std::vector<Metric>& metrics() const { return metrics_; }

 private:
  std::vector<Loss> losses_;
  std::vector<Metric> metrics_;
};

/// The calling thread's collector (each thread runs its own forward passes).
AuxOutputs& aux_outputs();

}  // namespace bl
