// LoRA over a whole model (lmxlab.core.lora, PEFT, the Go lora package).
// A Linear with an adapter is lmxlab's LoRALinear (core/linear.h):
//   from_linear(linear, rank, alpha) == linear.add_lora(rank, alpha, rng)
//   to_linear()                      == linear.merge_lora()
// Over a quantized base (quant/quantize.h) the same adapter is QLoRA: the base
// stays quantized and frozen, only A and B train.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/linear.h"
#include "core/module.h"

namespace bl {

/// Target roles and the Linear names they select (engine/core attention and FFNs).
/// "attention" = q, k, v, o; "mlp" = gate, up, down; "all" = every Linear.
/// A target containing '*' or '.' is a glob over the full module path
/// ("layers.0.*", "*.attention.*_proj"); a plain "q_proj" matches that name.
const std::vector<std::pair<std::string, std::string>>& lora_roles();

/// Every Linear of the model with its dotted path ("layers.0.attention.q_proj").
std::vector<std::pair<std::string, Linear*>> named_linears(Module& model);

/// Linear paths selected by targets (each role / name / pattern must match at
/// least one Linear, else std::invalid_argument naming it and the known roles).
std::vector<std::string> lora_target_paths(Module& model, const std::vector<std::string>& targets);

/// Freezes every parameter of the model and attaches a rank-`rank` adapter
/// (A Kaiming-normal from Rng(seed), B zero) to each targeted Linear. Default
/// targets q and v (PEFT's default for Llama). Returns the adapted paths.
/// The largest LoRA alpha accepted (PEFT configs use up to a few hundred).
constexpr float kMaxLoraAlpha = 65536.0f;

/// Throws std::invalid_argument("<what> must be a finite number in (0, 65536],
/// got X") unless 0 < alpha <= kMaxLoraAlpha (NaN, 0 and 1e38 all fail).
void check_lora_alpha(float alpha, const std::string& what);

std::vector<std::string> apply_lora(Module& model, int64_t rank = 8, float alpha = 16.0f,
                                    const std::vector<std::string>& targets = {"q", "v"},
                                    uint64_t seed = 0);

/// Merges every adapter into its base weight (a quantized base becomes float),
/// removes the adapters and makes every parameter trainable again.
void merge_lora(Module& model);
/// Removes every adapter without merging (the base model again), unfreezing all.
void remove_lora(Module& model);

/// The adapter parameters (lora_A / lora_B), by full name.
std::vector<std::pair<std::string, Parameter*>> lora_parameters(Module& model);
/// Elements of trainable parameters (tied ones once).
int64_t trainable_parameter_count(Module& model);
/// Elements of all weights, quantized ones included (Module::num_parameters).
int64_t total_parameter_count(Module& model);

}  // namespace bl
