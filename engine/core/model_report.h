// Parameter and FLOP accounting of a whole model, per layer and per layer
// type, counted on the engine's own module tree (built without storage, so a
// 671B-parameter published shape costs nothing): the numbers behind
// `blocklab-cli models count` and the composer's analysis.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/model.h"

namespace bl {

/// Layers sharing one (attention, ffn) pair, summed.
struct LayerTypeStats {
  std::string attention, ffn;
  int64_t layers = 0;
  int64_t params = 0;
  int64_t active_params = 0;
  double flops_per_token = 0;
};

struct ModelReport {
  int64_t params = 0;            // every distinct weight (tied counted once), MTP heads included
  int64_t active_params = 0;     // used per token at inference: MoE active experts, no MTP heads
  int64_t embedding_params = 0;  // token embedding (+ learned positions)
  int64_t mtp_params = 0;        // multi-token-prediction heads (training only)
  int64_t seq_len = 0;           // context the FLOPs are counted at
  double flops_per_token = 0;    // training (forward + backward), MTP heads included
  std::vector<LayerStats> layers;
  std::vector<LayerTypeStats> by_type;  // in order of first appearance
};

/// Validates `m` (throws ConfigError) and counts it at context seq_len.
ModelReport report_model(const ModelConfig& m, int64_t seq_len);

}  // namespace bl
