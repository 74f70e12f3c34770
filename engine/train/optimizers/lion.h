// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
//   w *= 1 - lr*wd                      (rank >= 2 params only)
//   w -= lr * sign(b1*m + (1-b1)*g)     (sign(0) = 0, like torch.sign)
//   m = b2*m + (1-b2)*g
// Typical settings use a 3-10x smaller lr and a 3-10x larger wd than AdamW.
#pragma once

#include "train/optimizer.h"

namespace bl {

class Lion final : public Optimizer {
 public:
  /// Betas default to 0.9 / 0.99 (the paper's).
  Lion(std::vector<Parameter*> params, const OptimizerOptions& opt = {});
  std::string name() const override { return "lion"; }
  float beta1() const { return b1_; }
  float beta2() const { return b2_; }

 protected:
  void update(float lr, const std::vector<size_t>& active) override;

 private:
  float b1_, b2_;
  std::vector<float*> m_;
};

}  // namespace bl
