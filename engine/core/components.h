// The four block-component slots (attention, ffn, norm, position), their
// interfaces, and the registries that build them by name from a BlockConfig.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/module.h"
#include "core/registry.h"
#include "tensor/parameter.h"
#include "tensor/tensor.h"

namespace bl {

struct BlockConfig;

/// Per-layer decoding state (KV cache, recurrent state). Each attention
/// component defines its own subclass.
struct LayerState {
  virtual ~LayerState() = default;
  int64_t length = 0;  // tokens already consumed (the absolute position of the next token)
  int64_t batch = 0;   // sequences held

  /// A deep copy: speculative decoding rolls back to it.
  virtual std::unique_ptr<LayerState> clone() const { return std::make_unique<LayerState>(*this); }
  /// Keeps the sequences `rows` (indices into the current batch, repeats
  /// allowed), in that order: beam search's reorder. The batch becomes rows.size().
  void select_rows(const std::vector<int64_t>& rows);

 protected:
  /// Buffers laid out (batch, ...): select_rows gathers their rows.
  virtual std::vector<Buffer*> batch_buffers() { return {}; }
};

/// clone() for a state type S by its copy constructor.
template <class S>
struct CloneableState : LayerState {
  std::unique_ptr<LayerState> clone() const override {
    return std::make_unique<S>(static_cast<const S&>(*this));
  }
};

class PositionEncoding;

/// Token mixer: x (B, T, d_model) -> (B, T, d_model).
class Attention : public Module {
 public:
  /// With state == nullptr: a full causal pass over positions [0, T).
  /// With a state: T new tokens at positions [state->length, state->length + T);
  /// the state is updated (the caller advances nothing itself).
  virtual Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) = 0;
  /// residual + forward(x, pos, state). Mixers that end in a plain linear
  /// fold the add into it; a subclass that overrides forward() of such a
  /// mixer must override this too (tests/residual_test checks every one).
  virtual Tensor forward_add(const Tensor& x, PositionEncoding& pos, LayerState* state,
                             const Tensor& residual);
  /// Decoding state for `batch` sequences of up to max_len tokens.
  virtual std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const = 0;
  /// Forward FLOPs per token in the attention mixing itself (scores and
  /// weighted sum, or the recurrent update) at context length seq_len, excluding
  /// the projections, which count through their parameters.
  virtual double mixing_flops_per_token(int64_t seq_len) const = 0;
};

/// Channel mixer: x (B, T, d_model) -> (B, T, d_model).
class FeedForward : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  /// residual + forward(x); see Attention::forward_add.
  virtual Tensor forward_add(const Tensor& x, const Tensor& residual);
  /// Parameters used per token (MoE: only the active experts); default: all.
  virtual int64_t active_parameters() { return num_parameters(); }
  /// Index of the owning block in the model (names per-layer metrics, e.g. MoE load).
  void set_layer_index(int64_t i) { layer_index_ = i; }
  int64_t layer_index() const { return layer_index_; }

 private:
  int64_t layer_index_ = 0;
};

class Norm : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
};

/// Position information. Absolute encodings act on the embeddings at the
/// model input; relative ones act inside attention.
class PositionEncoding : public Module {
 public:
  /// x (B, T, d_model) holding positions [offset, offset + T). Identity by default.
  virtual Tensor embed(const Tensor& x, int64_t offset) { return x; }
  /// q or k (B, T, n_heads * head_dim) at positions [offset, offset + T). Identity by default.
  virtual Tensor rotate(const Tensor& qk, int64_t n_heads, int64_t offset) { return qk; }
  /// Per-query-head ALiBi slopes (n_heads floats), or null.
  virtual const float* alibi_slopes() const { return nullptr; }
  /// True for encodings added to the embeddings (learned, sinusoidal).
  virtual bool is_absolute() const { return false; }
};

Registry<Attention>& attention_registry();
Registry<FeedForward>& ffn_registry();
Registry<Norm>& norm_registry();
Registry<PositionEncoding>& position_registry();

}  // namespace bl
