#include "arch/arch_edit.h"

#include <algorithm>
#include <cmath>
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
bool has(const std::string& s, const char* part) {
  return s.find(part) != std::string::npos;
}
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

std::vector<BlockField> make_fields() {
  // GQA-family attention reads n_kv_heads; "mha" always uses n_heads K/V heads.
  auto kv = [](const BlockConfig& b) { return has(b.attention, "gqa") || b.attention == "mqa"; };
  auto qk = [](const BlockConfig& b) { return b.attention == "mha" || has(b.attention, "gqa"); };
  auto moe = [](const BlockConfig& b) { return has(b.ffn, "moe"); };
  const double big = 1 << 20;
  return {
      {"d_model", "d_model", Kind::kInt, Slot::kAttention, 1, 65536, always, BL_INT(d_model)},
      {"n_heads", "heads", Kind::kInt, Slot::kAttention, 1, 1024, always, BL_INT(n_heads)},
      {"n_kv_heads", "K/V heads", Kind::kOptInt, Slot::kAttention, 0, 1024, kv, BL_OPT(n_kv_heads)},
      {"qk_norm", "QK norm", Kind::kBool, Slot::kAttention, 0, 1, qk, BL_BOOL(qk_norm)},
      {"window_size", "window", Kind::kOptInt, Slot::kAttention, 0, big,
       [](const BlockConfig& b) { return has(b.attention, "sliding"); }, BL_OPT(window_size)},
      {"attention_chunk_size", "chunk size", Kind::kOptInt, Slot::kAttention, 0, big,
       [](const BlockConfig& b) { return has(b.attention, "chunk"); },
       BL_OPT(attention_chunk_size)},
      {"kv_lora_rank", "KV LoRA rank", Kind::kOptInt, Slot::kAttention, 0, big,
       [](const BlockConfig& b) { return b.attention == "mla"; }, BL_OPT(kv_lora_rank)},
      {"q_lora_rank", "Q LoRA rank", Kind::kOptInt, Slot::kAttention, 0, big,
       [](const BlockConfig& b) { return b.attention == "mla"; }, BL_OPT(q_lora_rank)},
      {"d_ff", "d_ff", Kind::kInt, Slot::kFfn, 1, big,
       [](const BlockConfig& b) { return b.ffn != "none"; }, BL_INT(d_ff)},
      {"n_experts", "experts", Kind::kOptInt, Slot::kFfn, 0, 4096, moe, BL_OPT(n_experts)},
      {"top_k_experts", "top-k", Kind::kInt, Slot::kFfn, 1, 4096, moe, BL_INT(top_k_experts)},
      {"n_shared_experts", "shared experts", Kind::kOptInt, Slot::kFfn, 0, 4096, moe,
       BL_OPT(n_shared_experts)},
      {"moe_d_ff", "expert d_ff", Kind::kOptInt, Slot::kFfn, 0, big, moe, BL_OPT(moe_d_ff)},
      {"norm_eps", "eps", Kind::kDouble, Slot::kNorm, 1e-12, 1, always, BL_DBL(norm_eps)},
      {"rope_theta", "rope θ", Kind::kDouble, Slot::kPosition, 1, 1e9,
       [](const BlockConfig& b) { return b.position == "rope"; }, BL_DBL(rope_theta)},
      {"rope_dim", "rope dims", Kind::kOptInt, Slot::kPosition, 0, 4096,
       [](const BlockConfig& b) { return b.attention == "mla"; }, BL_OPT(rope_dim)},
      // Model-wide in the composer (shown in the model form, never per layer).
      {"max_seq_len", "max_seq_len", Kind::kInt, Slot::kPosition, 1, big, always,
       BL_INT(max_seq_len)},
      {"bias", "bias", Kind::kBool, Slot::kAttention, 0, 1, always, BL_BOOL(bias)},
      {"pre_norm", "pre-norm", Kind::kBool, Slot::kNorm, 0, 1, always, BL_BOOL(pre_norm)},
      {"dropout", "dropout", Kind::kDouble, Slot::kAttention, 0, 0.99, always, BL_DBL(dropout)},
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
  if (!m.block_configs.empty()) return m.block_configs;
  return std::vector<BlockConfig>(size_t(std::max<int64_t>(m.n_layers, 0)), m.block);
}

void set_layer_blocks(ModelConfig& m, std::vector<BlockConfig> layers) {
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
    keep_mha_consistent(b);
  }
  component(m.block, s) = name;
  keep_mha_consistent(m.block);
  set_layer_blocks(m, std::move(layers));
}

void set_layer_component(ModelConfig& m, int64_t first, int64_t last, Slot s,
                         const std::string& name) {
  std::vector<BlockConfig> layers = layer_blocks(m);
  if (first <= 0 && last >= int64_t(layers.size()) - 1) {
    component(m.block, s) = name;
    keep_mha_consistent(m.block);
    first = 0;
  }
  for (int64_t i = std::max<int64_t>(first, 0); i <= last && i < int64_t(layers.size()); ++i) {
    component(layers[size_t(i)], s) = name;
    keep_mha_consistent(layers[size_t(i)]);
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
