// AdamW (Loshchilov & Hutter), step for step like torch.optim.AdamW:
//   w *= 1 - lr*wd                      (rank >= 2 params only)
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)     (eps outside the sqrt)
#pragma once

#include "train/optimizer.h"

namespace bl {

class AdamW final : public Optimizer {
 public:
  /// Betas default to 0.9 / 0.95 (torch_ref's recipe).
  AdamW(std::vector<Parameter*> params, const OptimizerOptions& opt = {});
  std::string name() const override { return "adamw"; }
  float beta1() const { return b1_; }
  float beta2() const { return b2_; }

 protected:
  void update(float lr, const std::vector<size_t>& active) override;

 private:
  struct Scalars {
    float decay_mul, step_size, bc2_sqrt;
  };
  float b1_, b2_;
  std::vector<float*> m_, v_;
  std::vector<Scalars> sc_;
};

}  // namespace bl
