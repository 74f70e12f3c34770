// Adafactor (Shazeer & Stern 2018), following HF transformers' Adafactor with
// relative_step=False (the lr passed to step() is used) and warmup_init=False.
// Per parameter, at its step t:
//   lr_t   = lr * max(eps2, RMS(w))         if scale_parameter, else lr
//   beta2t = 1 - t^decay_rate               (decay_rate -0.8: beta2t = 0 at t = 1)
//   rank >= 2 (factored over the last two dims, leading dims are a batch):
//     R = beta2t*R + (1-beta2t)*mean_cols(g^2) + eps1-ish,  C likewise over rows
//     u = g / sqrt(R/mean(R) ⊗ C)           (Adafactor's rank-1 estimate of v)
//   rank <= 1: v = beta2t*v + (1-beta2t)*(g^2 + eps1);  u = g / sqrt(v)
//   u /= max(1, RMS(u)/clip_threshold)      (update clipping, d = 1)
//   u *= lr_t;  with beta1: m = beta1*m + (1-beta1)*u, u = m
//   w = w*(1 - wd*lr_t) - u                 (decoupled decay, rank >= 2 only)
// Choices: eps1 is added to the row/col means (HF adds it to g^2 before the mean:
// identical in exact arithmetic); means and RMS are accumulated in double.
// Parallelism: one parallel region per step over the parameters (largest first,
// dynamic schedule); each parameter is updated serially with vectorised loops, so
// results do not depend on the thread count. A single parameter holding most of
// the model's weights would limit the speed-up.
// Note that scale_parameter makes the step ~RMS(w) * lr (~0.02 * lr at init), so
// useful lrs are ~10x larger than AdamW's.
#pragma once

#include <vector>

#include "train/optimizer.h"

namespace bl {

class Adafactor final : public Optimizer {
 public:
  Adafactor(std::vector<Parameter*> params, const OptimizerOptions& opt = {});
  std::string name() const override { return "adafactor"; }
  /// Whether the first moment (beta1) is kept.
  bool has_first_moment() const { return use_m_; }

 protected:
  void update(float lr, const std::vector<size_t>& active) override;

 private:
  struct Info {
    bool factored = false;
    int64_t batch = 1, rows = 1, cols = 1;  // factored view (batch, rows, cols)
    float* row = nullptr;                   // (batch, rows) running mean of g^2 over cols
    float* col = nullptr;                   // (batch, cols) running mean of g^2 over rows
    float* v = nullptr;                     // unfactored second moment
    float* m = nullptr;                     // first moment (beta1 set)
    // Scratch (not state): row / column factors and column sums.
    std::vector<float> rfac, cfac;
    std::vector<double> colsum;
  };
  void update_one(size_t i, float lr);
  bool use_m_;
  float b1_ = 0.0f;
  std::vector<Info> info_;
  std::vector<size_t> order_;  // active params, largest first (load balance)
};

}  // namespace bl
