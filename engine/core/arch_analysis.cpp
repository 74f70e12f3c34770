#include "core/arch_analysis.h"

#include <exception>

#include "core/model.h"
#include "tensor/parameter.h"

namespace bl {

namespace {

constexpr double kFloat = 4.0;  // bytes per fp32 value

double ffn_activation_floats(const BlockConfig& b) {
  if (b.ffn == "none") return 0;
  if (b.ffn == "gated") return 3.0 * double(b.d_ff);  // gate, up, swiglu
  return 2.0 * double(b.d_ff);                        // up, gelu
}

}  // namespace

double activation_floats_per_token(const BlockConfig& b) {
  const double d = double(b.d_model), h = double(b.n_heads), hd = double(b.head_dim());
  const double kv = double(b.attention == "mha" ? b.n_heads : b.effective_n_kv_heads());
  const double qd = h * hd, kvd = kv * hd;
  const double norm = d + 2;                      // output + per-row statistics
  const double drop = b.dropout > 0 ? 2 * d : 0;  // mask + output
  double f = norm + qd + 2 * kvd;                 // attention norm, q, k, v
  if (b.qk_norm) f += qd + kvd;
  if (b.position == "rope") f += qd + kvd;
  f += qd + h + d + drop + d;  // attention output, row logsumexps, o_proj, dropout, residual
  if (b.ffn != "none") f += norm + ffn_activation_floats(b) + d + drop + d;
  return f;
}

ArchAnalysis analyse_architecture(const ModelConfig& m, int64_t seq_len, int64_t batch) {
  ArchAnalysis a;
  const BlockConfig& base = m.block;
  const double tokens = double(seq_len) * double(batch);
  std::vector<BlockConfig> layers;
  for (int64_t i = 0; i < m.n_layers; ++i) layers.push_back(m.get_block_config(i));
  const bool absolute = base.position == "learned" || base.position == "sinusoidal";
  a.embedding.activation_bytes = tokens * kFloat * (absolute ? 2 : 1) * double(base.d_model);
  try {
    // Counted on the engine's own module tree, built without weight storage,
    // so a 671B shape costs no memory and every component counts itself.
    MetaParameterScope meta;
    LanguageModel model(m);
    const std::vector<LayerStats> stats = model.layer_stats(seq_len);
    for (size_t i = 0; i < stats.size(); ++i) {
      PartAnalysis p;
      p.params = stats[i].params;
      p.active_params = stats[i].active_params;
      p.flops_per_token = stats[i].flops_per_token;
      a.layers.push_back(p);
    }
    a.total.params = model.num_parameters();
    a.total.flops_per_token = model.flops_per_token(seq_len);
    a.embedding.params = model.num_parameters() - model.matmul_parameters() +
                         (m.tie_embeddings ? m.vocab_size * base.d_model : 0);
    a.from_engine = true;
  } catch (const std::exception& e) {
    a.error = e.what();
    return a;
  }

  // Embedding and head are what the layers leave over.
  a.head.params = a.total.params - a.embedding.params;
  a.head.flops_per_token = a.total.flops_per_token;
  a.total.active_params = a.total.params;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    PartAnalysis& p = a.layers[i];
    p.weight_bytes = kFloat * double(p.params);
    p.activation_bytes = tokens * kFloat * activation_floats_per_token(layers[i]);
    a.head.params -= p.params;
    a.head.flops_per_token -= p.flops_per_token;
    a.total.active_params -= p.params - p.active_params;
  }
  a.embedding.active_params = a.embedding.params;
  a.head.active_params = a.head.params;
  a.embedding.weight_bytes = kFloat * double(a.embedding.params);
  a.head.weight_bytes = kFloat * double(a.head.params);
  // Final norm output, logits and the softmax the cross-entropy keeps.
  a.head.activation_bytes =
      tokens * kFloat * (double(base.d_model) + 2 + 2.0 * double(m.vocab_size));
  a.total.weight_bytes = kFloat * double(a.total.params);
  a.total.activation_bytes = a.embedding.activation_bytes + a.head.activation_bytes;
  for (const PartAnalysis& p : a.layers) a.total.activation_bytes += p.activation_bytes;
  return a;
}

}  // namespace bl
