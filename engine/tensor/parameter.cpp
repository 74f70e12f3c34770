#include "tensor/parameter.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace bl {

void Buffer::Free::operator()(float* p) const {
  std::free(p);
}

void Buffer::resize(int64_t n) {
  n_ = n;
  size_t bytes = (sizeof(float) * size_t(n > 0 ? n : 1) + 63) & ~size_t(63);
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  p_.reset(p);
}

Buffer::Buffer(const Buffer& o) {
  *this = o;
}

Buffer& Buffer::operator=(const Buffer& o) {
  if (this == &o) return *this;
  if (!o.p_) {
    p_.reset();
    n_ = 0;
    return *this;
  }
  resize(o.n_);
  std::memcpy(p_.get(), o.p_.get(), sizeof(float) * size_t(o.n_));
  return *this;
}

namespace {
thread_local bool meta_parameters = false;
thread_local int current_replica = 0;
}  // namespace

ReplicaScope::ReplicaScope(int replica) : previous_(current_replica) {
  current_replica = replica;
}
ReplicaScope::~ReplicaScope() {
  current_replica = previous_;
}
int ReplicaScope::current() {
  return current_replica;
}

MetaParameterScope::MetaParameterScope() : previous_(meta_parameters) {
  meta_parameters = true;
}
MetaParameterScope::~MetaParameterScope() {
  meta_parameters = previous_;
}
bool MetaParameterScope::active() {
  return meta_parameters;
}

Parameter::Parameter(std::string name, const Shape& shape, bool trainable)
    : name_(std::move(name)), meta_(meta_parameters) {
  if (!meta_) value_.resize(shape.numel());
  impl_.shape = shape;
  impl_.data = value_.data();
  set_trainable(trainable);
}

void Parameter::set_trainable(bool on) {
  impl_.requires_grad = on;
  if (on && !meta_ && grad_.size() != numel()) grad_.resize(numel());
  if (!on) grad_ = Buffer();  // a frozen weight holds no gradient memory
  impl_.grad = on ? grad_.data() : nullptr;
  set_replicas(replicas());  // replicas follow
}

void Parameter::set_replicas(int n) {
  replicas_.resize(size_t(n > 1 ? n - 1 : 0));
  for (auto& r : replicas_) {
    if (!r) r = std::make_unique<Replica>();
    r->impl = impl_;
    if (impl_.requires_grad && !meta_) {
      if (r->grad.size() != numel()) r->grad.resize(numel());
    } else {
      r->grad = Buffer();
    }
    r->impl.grad = r->grad.data();
  }
}

TensorImpl* Parameter::replica_impl(int r) {
  if (r < 1 || r > int(replicas_.size()))
    throw std::logic_error("parameter '" + name_ + "': no gradient replica " + std::to_string(r) +
                           " (set_replicas was not called)");
  return &replicas_[size_t(r - 1)]->impl;
}

float* Parameter::replica_grad(int r) {
  return r == 0 ? grad_.data() : replica_impl(r)->grad;
}

void Parameter::zero_grad() {
  if (grad_.data()) std::memset(grad_.data(), 0, sizeof(float) * size_t(numel()));
  for (auto& r : replicas_)
    if (r->grad.data()) std::memset(r->grad.data(), 0, sizeof(float) * size_t(numel()));
}

void Parameter::fill(float v) {
  float* d = data();
  if (!d) return;  // meta parameter
  for (int64_t i = 0; i < numel(); ++i) d[i] = v;
}

void Parameter::init_normal(Rng& rng, float std) {
  float* d = data();
  if (!d) return;  // meta parameter
  for (int64_t i = 0; i < numel(); ++i) d[i] = float(rng.normal() * std);
}

}  // namespace bl
