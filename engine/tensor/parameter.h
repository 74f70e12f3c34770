// A trainable (or frozen) weight: persistent storage for value and gradient.
// Modules own their Parameters; optimizers and checkpoints see them by name.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace bl {

/// 64-byte aligned float storage that lives outside the graph arena.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t n) { resize(n); }
  // Deep copies: decoding states are cloned (speculative decoding's rollback).
  Buffer(const Buffer& o);
  Buffer& operator=(const Buffer& o);
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;
  void resize(int64_t n);  // zero-filled
  float* data() const { return p_.get(); }
  int64_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> p_;
  int64_t n_ = 0;
};

/// How Model::init_weights fills a parameter.
enum class Init {
  kNormal,          // N(0, init_std)
  kResidualNormal,  // N(0, init_std / sqrt(2 * n_layers)): projections into the residual stream
  kZeros,
  kOnes,
  kCustom,  // the owning module initialises it itself (init_custom)
};

/// While alive on this thread, new Parameters have shapes but no storage
/// (data() and grad() are null): for counting the parameters and FLOPs of
/// published models far too large to allocate. Such a model can't run.
class MetaParameterScope {
 public:
  MetaParameterScope();
  ~MetaParameterScope();
  MetaParameterScope(const MetaParameterScope&) = delete;
  MetaParameterScope& operator=(const MetaParameterScope&) = delete;
  static bool active();

 private:
  bool previous_;
};

/// Data-parallel training: while alive on a thread, Parameter::tensor() hands
/// out replica r's handle, which reads the shared values but accumulates its
/// gradient into the replica's own buffer (Parameter::set_replicas).
class ReplicaScope {
 public:
  explicit ReplicaScope(int replica);
  ~ReplicaScope();
  ReplicaScope(const ReplicaScope&) = delete;
  ReplicaScope& operator=(const ReplicaScope&) = delete;
  static int current();

 private:
  int previous_;
};

class Parameter {
 public:
  Parameter(std::string name, const Shape& shape, bool trainable = true);
  Parameter(const Parameter&) = delete;
  Parameter& operator=(const Parameter&) = delete;

  /// Handle for use in ops; the gradient accumulates into grad() (or, under a
  /// ReplicaScope, into that replica's buffer). A frozen parameter has no
  /// gradient to split, so every replica shares its handle and needs no
  /// set_replicas (trainers replicate only what they train).
  Tensor tensor() {
    const int r = ReplicaScope::current();
    return Tensor(r == 0 || !impl_.requires_grad ? &impl_ : replica_impl(r));
  }
  const std::string& name() const { return name_; }
  /// The owning model renames parameters to their full dotted path.
  void set_name(std::string n) { name_ = std::move(n); }
  const Shape& shape() const { return impl_.shape; }
  int64_t numel() const { return impl_.shape.numel(); }
  float* data() { return value_.data(); }
  const float* data() const { return value_.data(); }
  /// Gradient buffer; null while frozen (set_trainable(false) frees it).
  float* grad() { return grad_.data(); }
  bool trainable() const { return impl_.requires_grad; }
  void set_trainable(bool on);
  /// Zeroes the gradient, replicas' included.
  void zero_grad();
  /// n - 1 extra gradient buffers for replicas 1..n-1 (n = 1 frees them).
  /// Replica 0 is the parameter itself.
  void set_replicas(int n);
  int replicas() const { return 1 + int(replicas_.size()); }
  /// Gradient of replica r (r = 0: grad()); null while frozen.
  float* replica_grad(int r);

  /// Multiplier on the optimizer's learning rate for this parameter (μP's
  /// per-group rates: hidden matrices get 1 / width_mult). 1 by default.
  float lr_scale() const { return lr_scale_; }
  void set_lr_scale(float s) { lr_scale_ = s; }

  Init init_kind() const { return init_; }
  void set_init_kind(Init k) { init_ = k; }

  void fill(float v);
  void init_normal(Rng& rng, float std);

 private:
  struct Replica {
    TensorImpl impl;
    Buffer grad;
  };
  TensorImpl* replica_impl(int r);

  std::string name_;
  Buffer value_, grad_;
  TensorImpl impl_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  Init init_ = Init::kNormal;
  float lr_scale_ = 1.0f;
  bool meta_ = false;  // created under MetaParameterScope: no storage
};

}  // namespace bl
