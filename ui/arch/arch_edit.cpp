#include "arch/arch_edit.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "core/components.h"

namespace bl {

const char* slot_key(Slot s) {
  switch (s) {
    case Slot::kAttention:
      return "attention";
    case Slot::kFfn:
      return "ffn";
    case Slot::kNorm:
      return "norm";
    case Slot::kPosition:
      return "position";
  }
  return "";
}

std::string& component(BlockConfig& b, Slot s) {
  switch (s) {
    case Slot::kAttention:
      return b.attention;
    case Slot::kFfn:
      return b.ffn;
    case Slot::kNorm:
      return b.norm;
    case Slot::kPosition:
      break;
  }
  return b.position;
}
const std::string& component(const BlockConfig& b, Slot s) {
  return component(const_cast<BlockConfig&>(b), s);
}

std::vector<std::string> component_names(Slot s) {
  switch (s) {
    case Slot::kAttention:
      return attention_registry().names();
    case Slot::kFfn:
      return ffn_registry().names();
    case Slot::kNorm:
      return norm_registry().names();
    case Slot::kPosition:
      break;
  }
  return position_registry().names();
}

std::string component_summary(Slot s, const std::string& name) {
  auto get = [&](const auto& reg) { return reg.contains(name) ? reg.entry(name).summary : ""; };
  switch (s) {
    case Slot::kAttention:
      return get(attention_registry());
    case Slot::kFfn:
      return get(ffn_registry());
    case Slot::kNorm:
      return get(norm_registry());
    case Slot::kPosition:
      break;
  }
  return get(position_registry());
}

namespace {

using Kind = BlockField::Kind;
auto always = [](const BlockConfig&) { return true; };

// Accessor pairs for the three storage types.
#define BL_INT(field)                                   \
  [](const BlockConfig& b) { return double(b.field); }, \
      [](BlockConfig& b, double v) { b.field = int64_t(std::llround(v)); }
#define BL_OPT(field)                                                    \
  [](const BlockConfig& b) { return b.field ? double(*b.field) : 0.0; }, \
      [](BlockConfig& b, double v) {                                     \
        if (v > 0)                                                       \
          b.field = int64_t(std::llround(v));                            \
        else                                                             \
          b.field.reset();                                               \
      }
#define BL_DBL(field)                                   \
  [](const BlockConfig& b) { return double(b.field); }, \
      [](BlockConfig& b, double v) { b.field = v; }
#define BL_BOOL(field)                                      \
  [](const BlockConfig& b) { return b.field ? 1.0 : 0.0; }, \
      [](BlockConfig& b, double v) { b.field = v != 0; }

// A component-specific field is shown when one of the block's components
// lists it in its registry entry (engine/core/components.cpp).
std::function<bool(const BlockConfig&)> uses(const char* key) {
  return [key](const BlockConfig& b) {
    return attention_registry().uses_field(b.attention, key) ||
           ffn_registry().uses_field(b.ffn, key) || norm_registry().uses_field(b.norm, key) ||
           position_registry().uses_field(b.position, key);
  };
}

std::vector<BlockField> make_fields() {
  const double big = 1 << 20;
  using S = Slot;
  return {
      {"d_model", "d_model", Kind::kInt, S::kAttention, 1, 65536, always, BL_INT(d_model)},
      {"n_heads", "heads", Kind::kInt, S::kAttention, 1, 1024, always, BL_INT(n_heads)},
      {"n_kv_heads", "K/V heads", Kind::kOptInt, S::kAttention, 0, 1024, uses("n_kv_heads"),
       BL_OPT(n_kv_heads)},
      {"qk_norm", "QK norm", Kind::kBool, S::kAttention, 0, 1, uses("qk_norm"), BL_BOOL(qk_norm)},
      {"head_dim", "head dim", Kind::kOptInt, S::kAttention, 0, 4096, uses("head_dim"),
       BL_OPT(head_dim_override)},
      {"qkv_bias", "q/k/v bias", Kind::kBool, S::kAttention, 0, 1, uses("qkv_bias"),
       BL_BOOL(qkv_bias)},
      {"window_size", "window", Kind::kOptInt, S::kAttention, 0, big, uses("window_size"),
       BL_OPT(window_size)},
      {"attention_chunk_size", "chunk size", Kind::kOptInt, S::kAttention, 0, big,
       uses("attention_chunk_size"), BL_OPT(attention_chunk_size)},
      {"kv_lora_rank", "KV latent rank", Kind::kOptInt, S::kAttention, 0, big, uses("kv_lora_rank"),
       BL_OPT(kv_lora_rank)},
      {"q_lora_rank", "Q latent rank", Kind::kOptInt, S::kAttention, 0, big, uses("q_lora_rank"),
       BL_OPT(q_lora_rank)},
      {"rope_dim", "RoPE dims", Kind::kOptInt, S::kAttention, 0, 4096, uses("rope_dim"),
       BL_OPT(rope_dim)},
      {"sparse_compress_ratio", "compress ratio", Kind::kOptInt, S::kAttention, 0, 4096,
       uses("sparse_compress_ratio"), BL_OPT(sparse_compress_ratio)},
      {"sparse_select_k", "selected blocks", Kind::kOptInt, S::kAttention, 0, 4096,
       uses("sparse_select_k"), BL_OPT(sparse_select_k)},
      {"conv_kernel_size", "conv kernel", Kind::kInt, S::kAttention, 1, 64,
       uses("conv_kernel_size"), BL_INT(conv_kernel_size)},
      {"use_short_conv", "short conv", Kind::kBool, S::kAttention, 0, 1, uses("use_short_conv"),
       BL_BOOL(use_short_conv)},
      {"mamba_n_heads", "SSM heads", Kind::kOptInt, S::kAttention, 0, 4096, uses("mamba_n_heads"),
       BL_OPT(mamba_n_heads)},
      {"mamba_head_dim", "SSM head dim", Kind::kOptInt, S::kAttention, 0, 4096,
       uses("mamba_head_dim"), BL_OPT(mamba_head_dim)},
      {"ssm_state_size", "state size", Kind::kInt, S::kAttention, 1, 4096, uses("ssm_state_size"),
       BL_INT(ssm_state_size)},
      {"mamba_expand", "expand", Kind::kInt, S::kAttention, 1, 16, uses("mamba_expand"),
       BL_INT(mamba_expand)},
      {"mamba_n_groups", "B/C groups", Kind::kInt, S::kAttention, 1, 1024, uses("mamba_n_groups"),
       BL_INT(mamba_n_groups)},
      {"mamba_chunk_size", "scan chunk", Kind::kInt, S::kAttention, 1, 4096,
       uses("mamba_chunk_size"), BL_INT(mamba_chunk_size)},
      {"mamba_bc_norm", "B/C norm", Kind::kBool, S::kAttention, 0, 1, uses("mamba_bc_norm"),
       BL_BOOL(mamba_bc_norm)},
      {"mamba_trapezoidal", "trapezoidal", Kind::kBool, S::kAttention, 0, 1,
       uses("mamba_trapezoidal"), BL_BOOL(mamba_trapezoidal)},
      {"mamba_complex_a", "complex A", Kind::kBool, S::kAttention, 0, 1, uses("mamba_complex_a"),
       BL_BOOL(mamba_complex_a)},
      {"d_ff", "d_ff", Kind::kInt, S::kFfn, 1, big,
       [](const BlockConfig& b) { return b.ffn != "none"; }, BL_INT(d_ff)},
      {"n_experts", "experts", Kind::kOptInt, S::kFfn, 0, 4096, uses("n_experts"),
       BL_OPT(n_experts)},
      {"top_k_experts", "top-k", Kind::kInt, S::kFfn, 1, 4096, uses("top_k_experts"),
       BL_INT(top_k_experts)},
      {"n_shared_experts", "shared experts", Kind::kOptInt, S::kFfn, 0, 4096,
       uses("n_shared_experts"), BL_OPT(n_shared_experts)},
      {"moe_d_ff", "expert d_ff", Kind::kOptInt, S::kFfn, 0, big, uses("moe_d_ff"),
       BL_OPT(moe_d_ff)},
      {"shared_expert_d_ff", "shared d_ff", Kind::kOptInt, S::kFfn, 0, big,
       uses("shared_expert_d_ff"), BL_OPT(shared_expert_d_ff)},
      {"moe_latent_size", "latent size", Kind::kOptInt, S::kFfn, 0, big, uses("moe_latent_size"),
       BL_OPT(moe_latent_size)},
      {"moe_routed_scaling_factor", "routed scale", Kind::kDouble, S::kFfn, 0, 1000,
       uses("moe_routed_scaling_factor"), BL_DBL(moe_routed_scaling_factor)},
      {"moe_aux_loss_coef", "balance loss", Kind::kDouble, S::kFfn, 0, 10,
       uses("moe_aux_loss_coef"), BL_DBL(moe_aux_loss_coef)},
      {"moe_z_loss_coef", "z-loss", Kind::kDouble, S::kFfn, 0, 10, uses("moe_z_loss_coef"),
       BL_DBL(moe_z_loss_coef)},
      {"moe_bias_update_rate", "bias rate", Kind::kDouble, S::kFfn, 0, 1,
       uses("moe_bias_update_rate"), BL_DBL(moe_bias_update_rate)},
      {"moe_n_groups", "expert groups", Kind::kInt, S::kFfn, 1, 4096, uses("moe_n_groups"),
       BL_INT(moe_n_groups)},
      {"moe_topk_groups", "top groups", Kind::kInt, S::kFfn, 1, 4096, uses("moe_topk_groups"),
       BL_INT(moe_topk_groups)},
      // The tanh GELU (GPT-2's gelu_new; in a gated FFN, Gemma's GeGLU).
      {"ffn_activation", "tanh GELU", Kind::kBool, S::kFfn, 0, 1, uses("ffn_activation"),
       [](const BlockConfig& b) { return b.ffn_activation == "gelu_tanh" ? 1.0 : 0.0; },
       [](BlockConfig& b, double v) {
         if (v != 0)
           b.ffn_activation = "gelu_tanh";
         else
           b.ffn_activation.reset();
       }},
      {"norm_unit_offset", "1 + weight", Kind::kBool, S::kNorm, 0, 1, uses("norm_unit_offset"),
       BL_BOOL(norm_unit_offset)},
      {"norm_eps", "eps", Kind::kDouble, S::kNorm, 1e-12, 1, always, BL_DBL(norm_eps)},
      {"rope_theta", "rope θ", Kind::kDouble, S::kPosition, 1, 1e9, uses("rope_theta"),
       BL_DBL(rope_theta)},
      {"sinusoidal_vaswani", "Vaswani table", Kind::kBool, S::kPosition, 0, 1,
       uses("sinusoidal_vaswani"), BL_BOOL(sinusoidal_vaswani)},
      // Model-wide in the composer (shown in the model form, never per layer).
      {"max_seq_len", "max_seq_len", Kind::kInt, S::kPosition, 1, big, always, BL_INT(max_seq_len)},
      {"bias", "bias", Kind::kBool, S::kAttention, 0, 1, always, BL_BOOL(bias)},
      {"pre_norm", "pre-norm", Kind::kBool, S::kNorm, 0, 1, always, BL_BOOL(pre_norm)},
      {"dropout", "dropout", Kind::kDouble, S::kAttention, 0, 0.99, always, BL_DBL(dropout)},
  };
}
#undef BL_INT
#undef BL_OPT
#undef BL_DBL
#undef BL_BOOL

// "mha" has exactly n_heads K/V heads: a spelled-out n_kv_heads follows n_heads.
void keep_mha_consistent(BlockConfig& b) {
  if (b.attention == "mha" && b.n_kv_heads) b.n_kv_heads = b.n_heads;
}

// Choosing a component whose required fields are unset fills them, so the
// config stays valid (switching to sliding_window_gqa used to leave no window
// and fail at once). Fields already set are kept.
void fill_component_defaults(BlockConfig& b) {
  keep_mha_consistent(b);
  const int64_t quarter_ctx = std::max<int64_t>(1, b.max_seq_len / 4);
  if (b.attention == "sliding_window_gqa" && !b.window_size) b.window_size = quarter_ctx;
  if (b.attention == "chunked_gqa" && !b.attention_chunk_size) b.attention_chunk_size = quarter_ctx;
  if (b.attention == "mla") {
    if (!b.kv_lora_rank) b.kv_lora_rank = std::max<int64_t>(1, b.d_model / 4);
    // MLA's decoupled RoPE part: half a head, even (RoPE rotates pairs).
    if (b.position == "rope" && !b.rope_dim)
      b.rope_dim = std::max<int64_t>(2, (b.head_dim() / 2) & ~int64_t(1));
  }
  if (b.attention == "sparse_gqa") {
    if (!b.sparse_compress_ratio) b.sparse_compress_ratio = 4;
    if (!b.sparse_select_k) b.sparse_select_k = std::max<int64_t>(1, b.max_seq_len / 16);
  }
}

}  // namespace

const std::vector<BlockField>& block_fields() {
  static const std::vector<BlockField> fields = make_fields();
  return fields;
}

const BlockField* find_block_field(const std::string& key) {
  for (const BlockField& f : block_fields())
    if (f.key == key) return &f;
  return nullptr;
}

std::vector<BlockConfig> layer_blocks(const ModelConfig& m) {
  if (m.hybrid_pattern.empty() && !m.block_configs.empty()) return m.block_configs;
  if (m.hybrid_pattern.empty() || int64_t(m.hybrid_pattern.size()) != m.n_layers ||
      (!m.block_configs.empty() && int64_t(m.block_configs.size()) != m.n_layers))
    return std::vector<BlockConfig>(size_t(std::max<int64_t>(m.n_layers, 0)), m.block);
  std::vector<BlockConfig> layers;  // the pattern's layer kinds, as the engine builds them
  for (int64_t i = 0; i < m.n_layers; ++i) layers.push_back(m.get_block_config(i));
  return layers;
}

void set_layer_blocks(ModelConfig& m, std::vector<BlockConfig> layers) {
  m.hybrid_pattern.clear();  // the layers are spelled out now
  m.n_layers = int64_t(layers.size());
  const bool all_shared =
      std::all_of(layers.begin(), layers.end(), [&](const BlockConfig& b) { return b == m.block; });
  if (all_shared)
    m.block_configs.clear();
  else
    m.block_configs = std::move(layers);
}

void set_n_layers(ModelConfig& m, int64_t n) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  layers.resize(size_t(std::max<int64_t>(n, 1)), m.block);
  set_layer_blocks(m, std::move(layers));
}

void insert_layer(ModelConfig& m, int64_t at) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  at = std::clamp<int64_t>(at, 0, int64_t(layers.size()));
  layers.insert(layers.begin() + at, m.block);
  set_layer_blocks(m, std::move(layers));
}

void duplicate_layers(ModelConfig& m, int64_t first, int64_t last) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  const int64_t n = int64_t(layers.size());
  first = std::clamp<int64_t>(first, 0, n - 1);
  last = std::clamp<int64_t>(last, first, n - 1);
  std::vector<BlockConfig> copy(layers.begin() + first, layers.begin() + last + 1);
  layers.insert(layers.begin() + last + 1, copy.begin(), copy.end());
  set_layer_blocks(m, std::move(layers));
}

void remove_layers(ModelConfig& m, int64_t first, int64_t last) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  const int64_t n = int64_t(layers.size());
  first = std::clamp<int64_t>(first, 0, n - 1);
  last = std::clamp<int64_t>(last, first, n - 1);
  if (last - first + 1 >= n) last = n - 2;  // keep one layer
  if (last < first) return;
  layers.erase(layers.begin() + first, layers.begin() + last + 1);
  set_layer_blocks(m, std::move(layers));
}

int64_t move_layers(ModelConfig& m, int64_t first, int64_t last, int64_t to) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  const int64_t n = int64_t(layers.size());
  first = std::clamp<int64_t>(first, 0, n - 1);
  last = std::clamp<int64_t>(last, first, n - 1);
  std::vector<BlockConfig> moved(layers.begin() + first, layers.begin() + last + 1);
  layers.erase(layers.begin() + first, layers.begin() + last + 1);
  to = std::clamp<int64_t>(to, 0, int64_t(layers.size()));
  layers.insert(layers.begin() + to, moved.begin(), moved.end());
  set_layer_blocks(m, std::move(layers));
  return to;
}

void set_shared_field(ModelConfig& m, const BlockField& f, double v) {
  const double old = f.get(m.block);
  const bool everywhere = f.key == "d_model";
  std::vector<BlockConfig> layers = layer_blocks(m);
  for (BlockConfig& b : layers) {
    if (everywhere || f.get(b) == old) f.set(b, v);
    if (f.key == "n_heads") keep_mha_consistent(b);
  }
  f.set(m.block, v);
  if (f.key == "n_heads") keep_mha_consistent(m.block);
  set_layer_blocks(m, std::move(layers));
}

void set_layer_field(ModelConfig& m, int64_t first, int64_t last, const BlockField& f, double v) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  if (first <= 0 && last >= int64_t(layers.size()) - 1) {
    f.set(m.block, v);
    if (f.key == "n_heads") keep_mha_consistent(m.block);
    first = 0;
  }
  for (int64_t i = std::max<int64_t>(first, 0); i <= last && i < int64_t(layers.size()); ++i) {
    f.set(layers[size_t(i)], v);
    if (f.key == "n_heads") keep_mha_consistent(layers[size_t(i)]);
  }
  set_layer_blocks(m, std::move(layers));
}

void set_shared_component(ModelConfig& m, Slot s, const std::string& name) {
  const std::string old = component(m.block, s);
  std::vector<BlockConfig> layers = layer_blocks(m);
  for (BlockConfig& b : layers) {
    if (component(b, s) == old) component(b, s) = name;
    fill_component_defaults(b);
  }
  component(m.block, s) = name;
  fill_component_defaults(m.block);
  set_layer_blocks(m, std::move(layers));
}

void set_layer_component(ModelConfig& m, int64_t first, int64_t last, Slot s,
                         const std::string& name) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  if (first <= 0 && last >= int64_t(layers.size()) - 1) {
    component(m.block, s) = name;
    fill_component_defaults(m.block);
    first = 0;
  }
  for (int64_t i = std::max<int64_t>(first, 0); i <= last && i < int64_t(layers.size()); ++i) {
    component(layers[size_t(i)], s) = name;
    fill_component_defaults(layers[size_t(i)]);
  }
  set_layer_blocks(m, std::move(layers));
}

std::vector<std::string> differing_fields(const BlockConfig& b, const BlockConfig& base) {
  nlohmann::json jb, jbase;
  to_json(jb, b);
  to_json(jbase, base);
  std::set<std::string> keys;
  for (auto& [k, v] : jb.items()) keys.insert(k);
  for (auto& [k, v] : jbase.items()) keys.insert(k);
  std::vector<std::string> out;
  for (const std::string& k : block_config_field_names()) {  // declaration order
    if (!keys.count(k)) continue;
    const bool in_b = jb.contains(k), in_base = jbase.contains(k);
    if (in_b != in_base || (in_b && jb[k] != jbase[k])) out.push_back(k);
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> identical_runs(const ModelConfig& m) {
  std::vector<std::pair<int64_t, int64_t>> runs;
  const std::vector<BlockConfig> layers = layer_blocks(m);
  for (int64_t i = 0; i < int64_t(layers.size()); ++i) {
    if (!runs.empty() && layers[size_t(i)] == layers[size_t(runs.back().second)])
      runs.back().second = i;
    else
      runs.emplace_back(i, i);
  }
  return runs;
}

}  // namespace bl
