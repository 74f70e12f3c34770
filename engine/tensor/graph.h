// Reverse-mode autodiff tape. Each op computes its output eagerly and, when
// any input requires a gradient, records a backward closure. backward() runs
// the closures in reverse; each one *accumulates* (+=) into its inputs'
// gradients (allocating them with grad() before any parallel loop: the
// graph itself is not thread-safe, ops parallelise inside their kernels). Every thread has its own
// Graph (current_graph()); all its memory comes from one arena, so a warmed-up training step
// allocates nothing.
#pragma once

#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace bl {

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// New tensor with uninitialised data from the arena.
  Tensor empty(const Shape& s, bool requires_grad = false);
  Tensor zeros(const Shape& s, bool requires_grad = false);
  /// A tensor viewing `data` (not owned), e.g. a Parameter's storage.
  Tensor wrap(float* data, const Shape& s, float* grad = nullptr, bool requires_grad = false);
  /// Scratch floats valid until clear().
  float* alloc(int64_t n);
  template <class T>
  T* alloc_as(int64_t n) {
    return static_cast<T*>(
        arena_.alloc_bytes(sizeof(T) * size_t(n), alignof(T) < 64 ? 64 : alignof(T)));
  }

  /// Gradient buffer of t, allocated zeroed on first use.
  float* grad(const Tensor& t);
  /// grad(t) if t requires a gradient, else null (an op's backward skips it).
  float* grad_if_required(const Tensor& t) { return t.requires_grad() ? grad(t) : nullptr; }
  /// Gradient buffer of t for an op that can either overwrite it (fresh: the
  /// buffer is new and uninitialised, the caller must write every element) or
  /// add to it (not fresh). Saves zeroing a buffer that is overwritten next.
  float* grad_for_overwrite(const Tensor& t, bool& fresh);
  /// For an op whose backward would copy `from`'s gradient unchanged into t's
  /// (an add's operand): when t has no gradient buffer yet, it takes `from`'s
  /// buffer itself and the copy is skipped. Sound because backward runs in
  /// reverse order: every consumer of `from` has already added to its
  /// gradient, and the op asking is the last reader. False if t already has a
  /// buffer (a Parameter's, a view's, or an earlier consumer's).
  bool share_grad(const Tensor& t, const Tensor& from);
  /// Output of an op on `inputs` requires grad iff grad mode is on and any does.
  bool needs_grad(std::initializer_list<Tensor> inputs) const;

  /// Records a backward closure. It may capture only trivially destructible
  /// values (Tensor handles, pointers, numbers): the arena never runs destructors.
  template <class F>
  void on_backward(F&& f) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_trivially_destructible_v<Fn>,
                  "backward closures may capture only trivially destructible values");
    void* mem =
        arena_.alloc_bytes(sizeof(FnNode<Fn>), alignof(FnNode<Fn>) < 64 ? 64 : alignof(FnNode<Fn>));
    tape_.push_back(new (mem) FnNode<Fn>(std::forward<F>(f)));
  }

  /// Seeds d(loss)/d(loss) = seed and runs the tape backwards.
  void backward(const Tensor& loss, float seed = 1.0f);
  /// Runs the tape backwards with whatever output gradients were set by hand
  /// (tests seed a whole output tensor this way).
  void run_tape();
  /// Drops the tape and every intermediate tensor; keeps the memory.
  void clear();

  bool grad_enabled() const { return grad_enabled_; }
  void set_grad_enabled(bool on) { grad_enabled_ = on; }
  size_t tape_size() const { return tape_.size(); }
  size_t arena_capacity() const { return arena_.capacity(); }

 private:
  struct Node {
    virtual void run() = 0;
  };
  template <class Fn>
  struct FnNode final : Node {
    explicit FnNode(Fn&& f) : fn(std::move(f)) {}
    explicit FnNode(const Fn& f) : fn(f) {}
    void run() override { fn(); }
    Fn fn;
  };
  TensorImpl* new_impl();

  Arena arena_;
  std::vector<Node*> tape_;
  bool grad_enabled_ = true;
};

/// The calling thread's graph.
Graph& current_graph();

/// Disables recording on the current thread for its lifetime (eval, sampling).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(current_graph().grad_enabled()) { current_graph().set_grad_enabled(false); }
  ~NoGradGuard() { current_graph().set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace bl
