#include "core/linear.h"

#include "ops/matmul.h"

namespace bl {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Init init) : in_(in), out_(out) {
  weight = add_parameter("weight", Shape{out, in}, init);
  if (has_bias) bias = add_parameter("bias", Shape{out}, Init::kZeros);
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight->tensor(), bias ? bias->tensor() : Tensor());
}

}  // namespace bl
