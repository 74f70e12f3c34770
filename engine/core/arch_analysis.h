// Pre-flight analysis of a ModelConfig: parameters, training FLOPs/token,
// activation and weight memory, per layer and in total. Parameters and FLOPs
// are counted on the engine's own LanguageModel built without weight storage
// (MetaParameterScope), so any component counts itself exactly and a 7B config
// never allocates 28 GB just to be displayed. Activation memory is an estimate
// from the block's shapes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"

namespace bl {

struct PartAnalysis {
  int64_t params = 0;
  int64_t active_params = 0;    // per token (MoE: active experts only)
  double flops_per_token = 0;   // training (forward + backward)
  double activation_bytes = 0;  // fp32 intermediates kept for backward, per batch
  double weight_bytes = 0;      // fp32 weights
};

struct ArchAnalysis {
  std::vector<PartAnalysis> layers;
  PartAnalysis embedding;  // token embedding (+ absolute position table)
  PartAnalysis head;       // final norm + LM head (+ logits)
  PartAnalysis total;
  bool from_engine = false;  // counted on the engine's LanguageModel (always, when valid)
  std::string error;         // set when the model could not be analysed
};

/// Analysis at context seq_len with `batch` sequences per step. `m` must be valid.
ArchAnalysis analyse_architecture(const ModelConfig& m, int64_t seq_len, int64_t batch = 1);

/// fp32 values one token of this block keeps for backward (estimate).
double activation_floats_per_token(const BlockConfig& b);

}  // namespace bl
