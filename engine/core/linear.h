// Linear layer y = x Wᵀ + b: W (out, in) like torch.nn.Linear.
#pragma once

#include "core/module.h"

namespace bl {

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Init init = Init::kNormal);
  Tensor forward(const Tensor& x);
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Parameter* weight;          // (out, in)
  Parameter* bias = nullptr;  // (out) or null

 private:
  int64_t in_, out_;
};

}  // namespace bl
