// Optimizers: update trainable Parameters from their gradients.
//
// Common rules for every optimizer here:
//  - Weight decay touches only parameters of rank >= 2 (matmul weights and
//    embeddings), never biases or norm weights: torch_ref's two param groups.
//  - A parameter is updated when it is trainable (Parameter::trainable()); frozen
//    parameters keep their state untouched. Each parameter counts its own steps
//    (like torch's per-parameter state["step"]), so freezing and unfreezing is safe.
//  - The same Parameter* passed twice (tied weights) is updated once.
//  - State is float32 buffers named "<param name>.<slot>", for checkpoints.
//    The per-parameter step count is stored as a 1-float buffer "<param name>.step"
//    (exact up to 2^24 = 16.7M steps).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/parameter.h"

namespace bl {

/// Named float buffers: an optimizer's checkpointable state.
using NamedBuffers = std::vector<std::pair<std::string, std::vector<float>>>;

struct OptimizerOptions {
  /// Decoupled (AdamW, Lion, Adafactor) or coupled L2 (SGD) decay; rank >= 2 params only.
  float weight_decay = 0.1f;
  /// Unset = the optimizer's default: AdamW 0.9 / 0.95 (torch_ref's recipe),
  /// Lion 0.9 / 0.99. Adafactor: beta1 set enables a first moment (default off),
  /// beta2 is unused (Adafactor's beta2 follows adafactor_decay_rate). SGD: unused.
  std::optional<float> beta1, beta2;
  float eps = 1e-8f;      // AdamW, added outside the sqrt
  float momentum = 0.9f;  // SGD (0 = plain SGD)
  bool nesterov = false;  // SGD
  // Adafactor (Shazeer & Stern 2018; defaults of HF transformers' Adafactor).
  float adafactor_decay_rate = -0.8f;     // beta2_t = 1 - t^decay_rate
  float adafactor_clip_threshold = 1.0f;  // update clipping d
  float adafactor_eps1 = 1e-30f;          // added to grad^2
  float adafactor_eps2 = 1e-3f;           // floor of the parameter-scale RMS
  bool adafactor_scale_parameter = true;  // lr *= max(eps2, RMS(param))
};

class Optimizer {
 public:
  Optimizer(std::vector<Parameter*> params, const OptimizerOptions& opt);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// "adamw", "lion", "adafactor" or "sgd".
  virtual std::string name() const = 0;

  /// One update of every trainable parameter from its gradient, at learning rate lr.
  void step(float lr);
  /// Zeroes the gradients of all parameters.
  void zero_grad();

  /// Number of step() calls so far (restored by load_state).
  int64_t steps_taken() const { return steps_; }
  /// Copies of all state buffers, in parameter order.
  NamedBuffers state() const;
  /// Restores state() output; every buffer must be present with the right size,
  /// and no unknown names are accepted (throws std::invalid_argument).
  void load_state(const NamedBuffers& state, int64_t steps_taken);

  const std::vector<Parameter*>& params() const { return params_; }
  const OptimizerOptions& options() const { return opt_; }
  /// Floats of optimizer state (memory accounting).
  int64_t state_floats() const;
  /// Whether weight decay applies to p: rank >= 2.
  static bool decays(const Parameter& p) { return p.shape().rank >= 2; }

 protected:
  /// Registers a zero-filled state buffer "<param name>.<slot>" for param i.
  float* add_state(size_t i, const std::string& slot, int64_t n);
  /// Updates the params listed in active (indices into params_), whose step
  /// counters were already incremented (param_step(i) >= 1).
  virtual void update(float lr, const std::vector<size_t>& active) = 0;
  int64_t param_step(size_t i) const { return param_steps_[i]; }

  /// Elementwise optimizers: runs f(i, begin, end) over fixed chunks of the elements
  /// of the active params, all in one parallel region (one fork/join per step).
  template <class F>
  void for_each_chunk(const std::vector<size_t>& active, F&& f);

  std::vector<Parameter*> params_;
  OptimizerOptions opt_;

 private:
  struct Slot {
    std::string name;
    Buffer buf;
  };
  struct Chunk {
    size_t param;
    int64_t begin, end;
  };
  void run_chunks(void (*fn)(void*, const Chunk&), void* ctx);
  std::vector<std::vector<Slot>> slots_;
  std::vector<int64_t> param_steps_;
  std::vector<Chunk> chunks_;  // rebuilt per step, capacity kept
  std::vector<size_t> active_;
  std::vector<size_t> group_;  // active params sharing one lr_scale
  std::vector<float> scales_;
  int64_t steps_ = 0;
};

template <class F>
void Optimizer::for_each_chunk(const std::vector<size_t>& active, F&& f) {
  constexpr int64_t kChunk = 8192;  // ~8 us of work: amortises scheduling, keeps balance
  chunks_.clear();
  for (size_t i : active) {
    const int64_t n = params_[i]->numel();
    for (int64_t b = 0; b < n; b += kChunk) chunks_.push_back({i, b, std::min(n, b + kChunk)});
  }
  run_chunks([](void* ctx, const Chunk& c) { (*static_cast<F*>(ctx))(c.param, c.begin, c.end); },
             &f);
}

/// Builds an optimizer by name: "adamw", "lion", "adafactor", "sgd".
/// Throws std::invalid_argument listing the known names otherwise.
std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<Parameter*> params,
                                          const OptimizerOptions& opt = {});

/// Names accepted by make_optimizer.
std::vector<std::string> optimizer_names();

}  // namespace bl
