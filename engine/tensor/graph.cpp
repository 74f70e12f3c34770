#include "tensor/graph.h"

#include <cstring>
#include <stdexcept>

namespace bl {

TensorImpl* Graph::new_impl() {
  void* mem = arena_.alloc_bytes(sizeof(TensorImpl), alignof(TensorImpl));
  return new (mem) TensorImpl();
}

Tensor Graph::empty(const Shape& s, bool requires_grad) {
  TensorImpl* t = new_impl();
  t->shape = s;
  t->data = alloc(s.numel());
  t->requires_grad = requires_grad;
  return Tensor(t);
}

Tensor Graph::zeros(const Shape& s, bool requires_grad) {
  Tensor t = empty(s, requires_grad);
  std::memset(t.data(), 0, sizeof(float) * size_t(s.numel()));
  return t;
}

Tensor Graph::wrap(float* data, const Shape& s, float* grad, bool requires_grad) {
  TensorImpl* t = new_impl();
  t->shape = s;
  t->data = data;
  t->grad = grad;
  t->requires_grad = requires_grad;
  return Tensor(t);
}

float* Graph::alloc(int64_t n) {
  return static_cast<float*>(arena_.alloc_bytes(sizeof(float) * size_t(n), 64));
}

float* Graph::grad(const Tensor& t) {
  TensorImpl* p = t.impl();
  if (!p->grad) {
    p->grad = alloc(p->shape.numel());
    std::memset(p->grad, 0, sizeof(float) * size_t(p->shape.numel()));
  }
  return p->grad;
}

float* Graph::grad_for_overwrite(const Tensor& t, bool& fresh) {
  TensorImpl* p = t.impl();
  fresh = !p->grad;
  if (fresh) p->grad = alloc(p->shape.numel());
  return p->grad;
}

bool Graph::share_grad(const Tensor& t, const Tensor& from) {
  TensorImpl* p = t.impl();
  if (p->grad || !from.grad() || p == from.impl()) return false;
  p->grad = from.grad();
  return true;
}

bool Graph::needs_grad(std::initializer_list<Tensor> inputs) const {
  if (!grad_enabled_) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void Graph::backward(const Tensor& loss, float seed) {
  if (!loss.defined() || loss.numel() != 1)
    throw std::invalid_argument("[backward] loss must be a one-element tensor");
  if (!loss.requires_grad()) return;
  float* g = grad(loss);
  g[0] += seed;
  run_tape();
}

void Graph::run_tape() {
  for (size_t i = tape_.size(); i-- > 0;) tape_[i]->run();
  tape_.clear();
}

void Graph::clear() {
  tape_.clear();
  arena_.reset();
}

Graph& current_graph() {
  thread_local Graph g;
  return g;
}

}  // namespace bl
