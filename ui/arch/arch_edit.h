// Pure edits of a ModelConfig for the architecture composer: the table of
// editable BlockConfig fields (which component uses which field), layer
// insert/duplicate/delete/move, and shared-block vs per-layer edits. No Qt, so
// the rules are testable on their own and every GUI action is one call here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace bl {

/// The four component slots of a block (core/components.h registries).
enum class Slot { kAttention, kFfn, kNorm, kPosition };
const char* slot_key(Slot s);  // "attention", "ffn", ...
std::string& component(BlockConfig& b, Slot s);
const std::string& component(const BlockConfig& b, Slot s);
/// Registered names of the slot's registry, sorted.
std::vector<std::string> component_names(Slot s);
/// The registry's one-line summary of `name` ("" if unknown).
std::string component_summary(Slot s, const std::string& name);

/// One numeric or boolean BlockConfig field. Values travel as double (ints are
/// exact far beyond any sensible size); optional ints use 0 for "unset".
struct BlockField {
  enum class Kind { kInt, kOptInt, kDouble, kBool };
  std::string key;  // JSON key, also the name the engine's errors use
  std::string label;
  Kind kind;
  Slot slot;  // the component section it is shown under
  double lo, hi;
  std::function<bool(const BlockConfig&)> used;  // does this block's component read it?
  std::function<double(const BlockConfig&)> get;
  std::function<void(BlockConfig&, double)> set;
};
/// Every per-component field the block editor can show, in display order.
const std::vector<BlockField>& block_fields();
/// The field with JSON key `key`, or null.
const BlockField* find_block_field(const std::string& key);

/// Every layer's block (block_configs, or n_layers copies of the shared block).
std::vector<BlockConfig> layer_blocks(const ModelConfig& m);
/// Stores per-layer blocks (n_layers = layers.size()); block_configs is cleared
/// when every layer equals the shared block, so configs stay minimal.
void set_layer_blocks(ModelConfig& m, std::vector<BlockConfig> layers);

/// Grows (new layers copy the shared block) or truncates to n layers.
void set_n_layers(ModelConfig& m, int64_t n);
/// Inserts a copy of the shared block so that it becomes layer `at`.
void insert_layer(ModelConfig& m, int64_t at);
/// Copies layers [first, last] right after `last`.
void duplicate_layers(ModelConfig& m, int64_t first, int64_t last);
/// Removes layers [first, last]; at least one layer always remains.
void remove_layers(ModelConfig& m, int64_t first, int64_t last);
/// Moves layers [first, last] so they start at `to` in the result (clamped).
/// Returns the new index of the first moved layer.
int64_t move_layers(ModelConfig& m, int64_t first, int64_t last, int64_t to);

/// Shared-block edit: sets the field on m.block and on every layer that had
/// the old shared value (layers that override it keep theirs). d_model is
/// shared by the residual stream, so it always goes to every layer.
void set_shared_field(ModelConfig& m, const BlockField& f, double v);
/// Per-layer override: sets the field on layers [first, last] only. Covering
/// every layer edits the shared block instead (no override of everything).
void set_layer_field(ModelConfig& m, int64_t first, int64_t last, const BlockField& f, double v);
/// Same two rules for a component name.
void set_shared_component(ModelConfig& m, Slot s, const std::string& name);
void set_layer_component(ModelConfig& m, int64_t first, int64_t last, Slot s,
                         const std::string& name);

/// JSON keys in which `b` differs from `base` (what a layer overrides).
std::vector<std::string> differing_fields(const BlockConfig& b, const BlockConfig& base);
/// Runs of consecutive identical layers as [first, last] pairs, in order.
std::vector<std::pair<int64_t, int64_t>> identical_runs(const ModelConfig& m);

}  // namespace bl
