// Tensor: a cheap, trivially copyable handle to float32 contiguous row-major
// storage plus an optional gradient buffer. Intermediate tensors live in the
// thread's Graph arena and die at Graph::clear(); persistent tensors
// (weights, caches) are owned by a Parameter or a Buffer.
#pragma once

#include "tensor/shape.h"

namespace bl {

struct TensorImpl {
  float* data = nullptr;
  float* grad = nullptr;  // null until a backward pass accumulates into it
  Shape shape;
  bool requires_grad = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(TensorImpl* p) : p_(p) {}

  bool defined() const { return p_ != nullptr; }
  TensorImpl* impl() const { return p_; }
  float* data() const { return p_->data; }
  /// Gradient buffer, or null if nothing flowed into it (yet).
  float* grad() const { return p_->grad; }
  const Shape& shape() const { return p_->shape; }
  int rank() const { return p_->shape.rank; }
  int64_t dim(int i) const { return p_->shape[i]; }
  int64_t numel() const { return p_->shape.numel(); }
  int64_t rows() const { return p_->shape.rows(); }
  int64_t cols() const { return p_->shape.cols(); }
  bool requires_grad() const { return p_->requires_grad; }
  /// Value of a one-element tensor.
  float item() const { return p_->data[0]; }

 private:
  TensorImpl* p_ = nullptr;
};

}  // namespace bl
