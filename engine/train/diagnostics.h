// Training diagnostics every `interval` steps (TrainConfig::diagnostics_interval),
// per parameter group, logged as step metrics (so stored and chartable):
//
//   diag/grad_norm/<group>     L2 norm of the group's gradient (before clipping)
//   diag/weight_norm/<group>   L2 norm of the group's weights after the step
//   diag/update_ratio/<group>  ||w_after - w_before|| / ||w_before|| of the step
//   diag/eff_rank/<matrix>     effective rank of each >= 2-D weight of the group
//                              (its 2-D view: all but the last dimension as rows)
//   diag/time_ms               what computing all of the above took (ms)
//
// A group is a layer, "layers.<i>" (or "mtp.<k>"), or else a parameter's
// first name component ("embed_tokens", "lm_head", "norm"). <matrix> is the
// parameter's name without a trailing ".weight" ("layers.3.attention.q_proj").
// Effective rank (Roy & Vetterli 2007): exp of the entropy of the singular
// values normalised to sum 1; n for an identity, 1 for a rank-1 matrix.
//
// Diagnostics are logged on steps s with (s + 1) % interval == 0 (the
// eval_interval convention). Other steps cost two integer tests; the weight
// snapshot for the update ratio (one float per trainable weight: training
// memory grows by the weights' size while diagnostics are on) is allocated
// once at train begin.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/callbacks.h"

namespace bl {

class Parameter;

/// Effective rank of the row-major rows x cols matrix a (singular values only, BDCSVD).
double effective_rank(const float* a, int64_t rows, int64_t cols);

/// The group a parameter name belongs to (see above).
std::string diagnostics_group(const std::string& param_name);

class Diagnostics : public Callback {
 public:
  /// interval 0: off (nothing is computed or logged).
  explicit Diagnostics(int64_t interval) : interval_(interval) {}
  void on_train_begin(Trainer& t) override;
  void on_before_update(Trainer& t, int64_t step) override;
  void on_step_metrics(Trainer& t, StepMetrics& m) override;

  bool due(int64_t step) const { return interval_ > 0 && (step + 1) % interval_ == 0; }

 private:
  struct Group {
    std::string name;
    std::vector<Parameter*> params;
    double grad_sq = 0;  // of the pending step
  };
  struct Matrix {
    Parameter* p;
    std::string metric;  // diag/eff_rank/<matrix>
  };
  int64_t interval_;
  std::vector<Group> groups_;
  std::vector<Matrix> matrices_;
  std::vector<float> before_;  // every group's weights before the pending step, in order
  int64_t pending_ = -1;       // step whose pre-update state is in before_ / grad_sq
  std::vector<double> ranks_;  // per matrix, of the pending step
  double spent_ms_ = 0;        // the pending step's diagnostics time so far
  std::string name_;           // metric name scratch
};

}  // namespace bl
