// SGD with momentum, like torch.optim.SGD (dampening 0):
//   d = g + wd*w                        (coupled L2 decay, rank >= 2 params only)
//   buf = d on a parameter's first step, else buf = momentum*buf + d
//   w -= lr * (nesterov ? d + momentum*buf : buf)
// momentum = 0 gives plain SGD (no buffer is kept).
#pragma once

#include "train/optimizer.h"

namespace bl {

class SGD final : public Optimizer {
 public:
  SGD(std::vector<Parameter*> params, const OptimizerOptions& opt = {});
  std::string name() const override { return "sgd"; }

 protected:
  void update(float lr, const std::vector<size_t>& active) override;

 private:
  std::vector<float*> buf_;
};

}  // namespace bl
