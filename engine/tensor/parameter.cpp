#include "tensor/parameter.h"

#include <cstdlib>
#include <cstring>
#include <new>

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

namespace {
thread_local bool meta_parameters = false;
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
}

void Parameter::zero_grad() {
  if (grad_.data()) std::memset(grad_.data(), 0, sizeof(float) * size_t(numel()));
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
