#include "arch/arch_analysis.h"

#include <exception>

#include "core/model.h"

namespace bl {

namespace {

constexpr double kFloat = 4.0;  // bytes per fp32 value

std::optional<int64_t> norm_params(const BlockConfig& b) {
  if (b.norm == "layer_norm") return b.d_model * (b.bias ? 2 : 1);
  if (b.norm == "rms_norm") return b.d_model;
  return std::nullopt;
}

int64_t linear_params(int64_t in, int64_t out, bool bias) {
  return in * out + (bias ? out : 0);
}

bool is_gqa_family(const std::string& a) {
  return a == "mha" || a == "gqa";
}

// Parameters of the absolute position table at the model input (0 for relative ones).
std::optional<int64_t> absolute_position_params(const BlockConfig& b) {
  if (b.position == "learned") return b.max_seq_len * b.d_model;
  if (b.position == "sinusoidal" || b.position == "rope" || b.position == "alibi" ||
      b.position == "none")
    return 0;
  return std::nullopt;
}

double ffn_activation_floats(const BlockConfig& b) {
  if (b.ffn == "none") return 0;
  if (b.ffn == "gated") return 3.0 * double(b.d_ff);  // gate, up, swiglu
  return 2.0 * double(b.d_ff);                        // up, gelu
}

}  // namespace

std::optional<int64_t> analytic_block_params(const BlockConfig& b) {
  const auto norm = norm_params(b);
  if (!norm || !is_gqa_family(b.attention)) return std::nullopt;
  if (b.ffn != "standard" && b.ffn != "gated" && b.ffn != "none") return std::nullopt;
  if (!absolute_position_params(b)) return std::nullopt;  // unknown position component
  const int64_t d = b.d_model, h = b.n_heads, hd = b.head_dim();
  const int64_t kv = b.attention == "mha" ? h : b.effective_n_kv_heads();
  int64_t p = *norm;  // attention norm
  p += linear_params(d, h * hd, b.bias) + 2 * linear_params(d, kv * hd, b.bias) +
       linear_params(h * hd, d, b.bias);
  if (b.qk_norm) p += 2 * hd;
  if (b.ffn != "none") {
    p += *norm;  // ffn norm
    const int64_t n_in = b.ffn == "gated" ? 2 : 1;
    p += n_in * linear_params(d, b.d_ff, b.bias) + linear_params(b.d_ff, d, b.bias);
  }
  return p;  // relative position encodings hold no parameters; absolute ones live in the model
}

std::optional<double> analytic_mixing_flops(const BlockConfig& b, int64_t seq_len) {
  if (!is_gqa_family(b.attention)) return std::nullopt;
  return 4.0 * double(b.n_heads * b.head_dim()) * double(seq_len);
}

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

ArchAnalysis analyse_architecture(const ModelConfig& m, int64_t seq_len, int64_t batch,
                                  int64_t engine_limit) {
  ArchAnalysis a;
  const BlockConfig& base = m.block;
  const double tokens = double(seq_len) * double(batch);
  std::vector<BlockConfig> layers;
  for (int64_t i = 0; i < m.n_layers; ++i) layers.push_back(m.get_block_config(i));

  // Analytic counts first: they decide whether construction is cheap enough.
  bool analytic = true;
  int64_t estimate = 0;
  for (const BlockConfig& b : layers) {
    auto p = analytic_block_params(b);
    analytic = analytic && p && analytic_mixing_flops(b, seq_len);
    estimate += p.value_or(0);
  }
  const auto base_norm = norm_params(base);
  const auto abs_pos = absolute_position_params(base);
  analytic = analytic && base_norm && abs_pos;
  estimate += m.vocab_size * base.d_model * (m.tie_embeddings ? 1 : 2);

  const int64_t embed_params = m.vocab_size * base.d_model + abs_pos.value_or(0);
  a.embedding.params = embed_params;
  const bool absolute = base.position == "learned" || base.position == "sinusoidal";
  a.embedding.activation_bytes = tokens * kFloat * (absolute ? 2 : 1) * double(base.d_model);

  if (!analytic || estimate <= engine_limit) {
    try {
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
      a.from_engine = true;
    } catch (const std::exception& e) {
      a.error = e.what();
      return a;
    }
  } else {
    for (const BlockConfig& b : layers) {
      PartAnalysis p;
      p.params = p.active_params = *analytic_block_params(b);
      p.flops_per_token = 6.0 * double(p.params) + 3.0 * *analytic_mixing_flops(b, seq_len);
      a.layers.push_back(p);
    }
    const int64_t head_params = *base_norm + (m.tie_embeddings ? 0 : m.vocab_size * base.d_model);
    a.total.params = embed_params + head_params;
    a.total.flops_per_token = 6.0 * double(m.vocab_size * base.d_model + *base_norm);
    for (const PartAnalysis& p : a.layers) {
      a.total.params += p.params;
      a.total.flops_per_token += p.flops_per_token;
    }
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
