// Model-level quantization (lmxlab.core.quantize): quantize_model replaces the
// weight of every Linear layer and the token embedding / LM head by a frozen
// block-quantized copy (quant/quantized_matrix.h); dequantize_model restores
// float Parameters from the quantized values.
//
// Tied embeddings: the embedding table and the LM head are one tensor, so one
// quantized table serves both and they stay tied (memory counted once).
// Norm weights, biases, position tables and other small tensors stay float32
// (and trainable). save_checkpoint stores a quantized model as it is (codes,
// scales, biases; docs/checkpoint-format.md) and load_model_weights rebuilds it
// bit for bit into an unquantized model of the same config.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model.h"
#include "quant/quantized_matrix.h"

namespace bl {

struct QuantizeReport {
  int64_t bytes_before = 0;  // model_weight_bytes before
  int64_t bytes_after = 0;   // and after
  int64_t quantized = 0;     // tensors quantized (Linear weights + embedding / head tables)
  /// Layers left in float32, "<path>: <reason>" (in_features not a multiple of the group size).
  std::vector<std::string> skipped;
};

/// lmxlab's signature: bits 2 / 4 / 8, group_size 32 / 64 / 128, mode "affine" or
/// "nf4" (bits must be 4). Throws std::invalid_argument on other values.
QuantizeReport quantize_model(LanguageModel& model, int bits = 4, int64_t group_size = 64,
                              const std::string& mode = "affine");
QuantizeReport quantize_model(LanguageModel& model, const QuantSpec& spec);
/// Restores float weights everywhere (lossy: the quantized values, not the originals).
void dequantize_model(LanguageModel& model);

/// Bytes of all model weights as stored: distinct float Parameters (4 bytes an
/// element) plus quantized storage (packed codes + per-group constants).
int64_t model_weight_bytes(LanguageModel& model);

/// Gives every parameter its full dotted path as name (after adding / removing some).
void rename_parameters(Module& model);

}  // namespace bl
