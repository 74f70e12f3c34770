// Pre-flight analysis of a ModelConfig: parameters, training FLOPs/token,
// activation and weight memory, per layer and in total. Small models are
// counted on a real LanguageModel (the engine's own layer_stats); large ones
// with the same formulas analytically, so a 7B config never allocates 56 GB
// just to be displayed. gui_composer_test checks that both paths agree.
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
  bool from_engine = false;  // counted on a constructed LanguageModel
  std::string error;         // set when the model could not be analysed
};

/// Models estimated above this many parameters are analysed without construction
/// (measured: building gpt-small, 4.8M parameters, takes ~10 ms; formulas take µs).
inline constexpr int64_t kEngineAnalysisLimit = 8'000'000;

/// Analysis at context seq_len with `batch` sequences per step. `m` must be valid.
ArchAnalysis analyse_architecture(const ModelConfig& m, int64_t seq_len, int64_t batch = 1,
                                  int64_t engine_limit = kEngineAnalysisLimit);

/// Parameters of one block by formula; nullopt if a component has none.
std::optional<int64_t> analytic_block_params(const BlockConfig& b);
/// Forward FLOPs/token of the attention mixing (Attention::mixing_flops_per_token).
std::optional<double> analytic_mixing_flops(const BlockConfig& b, int64_t seq_len);
/// fp32 values one token of this block keeps for backward (estimate).
double activation_floats_per_token(const BlockConfig& b);

}  // namespace bl
