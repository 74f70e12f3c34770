#include "core/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/components.h"
#include "io/bounded_read.h"

namespace bl {

namespace {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (size_t i = 0; i < lines.size(); ++i) s += (i ? "\n" : "") + lines[i];
  return s;
}

// Every BlockConfig field, in lmxlab's order. One list drives reading, writing
// and the known-key check, so they can't drift apart. B is BlockConfig or const BlockConfig.
template <class B, class F>
void visit_fields(B& b, F&& f) {
  f("attention", b.attention);
  f("ffn", b.ffn);
  f("norm", b.norm);
  f("position", b.position);
  f("d_model", b.d_model);
  f("n_heads", b.n_heads);
  f("n_kv_heads", b.n_kv_heads);
  f("head_dim", b.head_dim_override);
  f("d_ff", b.d_ff);
  f("bias", b.bias);
  f("qkv_bias", b.qkv_bias);
  f("ffn_activation", b.ffn_activation);
  f("norm_unit_offset", b.norm_unit_offset);
  f("dropout", b.dropout);
  f("norm_eps", b.norm_eps);
  f("rope_theta", b.rope_theta);
  f("sinusoidal_vaswani", b.sinusoidal_vaswani);
  f("max_seq_len", b.max_seq_len);
  f("pre_norm", b.pre_norm);
  f("window_size", b.window_size);
  f("kv_lora_rank", b.kv_lora_rank);
  f("q_lora_rank", b.q_lora_rank);
  f("rope_dim", b.rope_dim);
  f("n_experts", b.n_experts);
  f("top_k_experts", b.top_k_experts);
  f("n_shared_experts", b.n_shared_experts);
  f("conv_kernel_size", b.conv_kernel_size);
  f("use_short_conv", b.use_short_conv);
  f("mamba_n_heads", b.mamba_n_heads);
  f("mamba_head_dim", b.mamba_head_dim);
  f("ssm_state_size", b.ssm_state_size);
  f("mamba_expand", b.mamba_expand);
  f("mamba_n_groups", b.mamba_n_groups);
  f("mamba_chunk_size", b.mamba_chunk_size);
  f("mamba_bc_norm", b.mamba_bc_norm);
  f("mamba_trapezoidal", b.mamba_trapezoidal);
  f("mamba_complex_a", b.mamba_complex_a);
  f("moe_latent_size", b.moe_latent_size);
  f("moe_d_ff", b.moe_d_ff);
  f("shared_expert_d_ff", b.shared_expert_d_ff);
  f("moe_routed_scaling_factor", b.moe_routed_scaling_factor);
  f("moe_n_groups", b.moe_n_groups);
  f("moe_topk_groups", b.moe_topk_groups);
  f("moe_aux_loss_coef", b.moe_aux_loss_coef);
  f("moe_z_loss_coef", b.moe_z_loss_coef);
  f("moe_bias_update_rate", b.moe_bias_update_rate);
  f("qk_norm", b.qk_norm);
  f("attention_chunk_size", b.attention_chunk_size);
  f("mup", b.mup);
  f("sparse_compress_ratio", b.sparse_compress_ratio);
  f("sparse_select_k", b.sparse_select_k);
}

// A field's JSON value; unset optionals are null.
template <class T>
nlohmann::json field_value(const T& v) {
  return nlohmann::json(v);
}
nlohmann::json field_value(const std::optional<int64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
nlohmann::json field_value(const std::optional<std::string>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// `b` as a JSON object in field order (J = json or ordered_json). Without base:
// every field, unset optionals omitted. With base: only the fields that differ
// from base; an optional set in base but unset in b is written as null (the
// only place nulls appear in our output).
template <class J>
J block_to(const BlockConfig& b, const BlockConfig* base) {
  J j = J::object();
  nlohmann::json ref;
  if (base) ref = *base;
  visit_fields(b, [&](const char* key, const auto& v) {
    nlohmann::json x = field_value(v);
    if (base) {
      nlohmann::json r = ref.contains(key) ? ref[key] : nlohmann::json(nullptr);
      if (r != x) j[key] = J(x);
    } else if (!x.is_null()) {
      j[key] = J(x);
    }
  });
  return j;
}

template <class J>
J model_to(const ModelConfig& m) {
  J j = J::object();
  if (!m.name.empty()) j["name"] = m.name;
  j["block"] = block_to<J>(m.block, nullptr);
  j["vocab_size"] = m.vocab_size;
  j["n_layers"] = m.n_layers;
  j["tie_embeddings"] = m.tie_embeddings;
  if (!m.block_configs.empty()) {
    J arr = J::array();
    for (auto& b : m.block_configs) arr.push_back(block_to<J>(b, &m.block));
    j["block_configs"] = arr;
  }
  if (m.mup_base_width) j["mup_base_width"] = *m.mup_base_width;
  j["mtp_n_predict"] = m.mtp_n_predict;
  j["mtp_lambda"] = m.mtp_lambda;
  j["init_std"] = m.init_std;
  if (m.embed_scale != 1.0) j["embed_scale"] = m.embed_scale;
  if (!m.hybrid_pattern.empty()) j["hybrid_pattern"] = m.hybrid_pattern;
  return j;
}

void read_block(const nlohmann::json& j, const std::string& path, BlockConfig& b,
                std::vector<std::string>& errors) {
  JsonObjectReader r(j, path, errors);
  visit_fields(b, [&](const char* key, auto& v) { r.get(key, v); });
  r.finish();
}

void throw_if(const std::vector<std::string>& errors) {
  if (!errors.empty()) throw ConfigError(errors);
}

std::string describe(const nlohmann::json& v) {
  std::string d = v.dump();
  if (d.size() > 40) d = d.substr(0, 37) + "...";
  return std::string(v.type_name()) + " " + d;
}

}  // namespace

// ---------------------------------------------------------------- ConfigError

ConfigError::ConfigError(const std::string& message)
    : std::invalid_argument(message), errors_{message} {}
ConfigError::ConfigError(std::vector<std::string> errors)
    : std::invalid_argument(join_lines(errors)), errors_(std::move(errors)) {}

// ---------------------------------------------------------------- ModelConfig

BlockConfig ModelConfig::get_block_config(int64_t layer) const {
  if (!block_configs.empty() && (layer < 0 || layer >= int64_t(block_configs.size())))
    throw std::out_of_range("get_block_config: layer " + std::to_string(layer) +
                            " out of range [0, " + std::to_string(block_configs.size()) + ")");
  const BlockConfig& b = block_configs.empty() ? block : block_configs[size_t(layer)];
  if (layer >= 0 && layer < int64_t(hybrid_pattern.size()))
    return apply_hybrid_kind(b, hybrid_pattern[size_t(layer)]);
  return b;
}

namespace {
bool is_moe(const std::string& ffn) {
  return ffn.find("moe") != std::string::npos;
}
bool is_token_mixer_without_attention(const std::string& a) {
  return a == "none" || a.rfind("mamba", 0) == 0 || a == "gated_deltanet";
}
}  // namespace

BlockConfig apply_hybrid_kind(BlockConfig b, char kind) {
  switch (kind) {
    case 'M':
      b.attention = "mamba2";
      b.ffn = "none";
      break;
    case '*':
      if (is_token_mixer_without_attention(b.attention)) b.attention = "gqa";
      b.ffn = "none";
      break;
    case '-':
      b.attention = "none";
      if (b.ffn == "none" || is_moe(b.ffn)) b.ffn = "relu2";
      break;
    case 'E':
      b.attention = "none";
      if (!is_moe(b.ffn)) b.ffn = "moe";
      break;
    default:
      break;
  }
  return b;
}

double ModelConfig::width_mult() const {
  if (!mup_base_width || *mup_base_width == 0) return 1.0;
  return double(block.d_model) / double(*mup_base_width);
}

// ---------------------------------------------------------------- edit distance

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

namespace {
bool is_subsequence(const std::string& needle, const std::string& hay) {
  size_t i = 0;
  for (char c : hay)
    if (i < needle.size() && needle[i] == c) ++i;
  return i == needle.size();
}
}  // namespace

std::string closest_name(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  const size_t limit = std::max<size_t>(2, name.size() / 3);
  for (auto& c : candidates) {
    size_t d = edit_distance(name, c);
    bool close = d <= limit || (name.size() >= 2 && is_subsequence(name, c));
    if (close && d < best_d) best_d = d, best = c;
  }
  return best;
}

// ---------------------------------------------------------------- JsonObjectReader

JsonObjectReader::JsonObjectReader(const nlohmann::json& j, std::string path,
                                   std::vector<std::string>& errors)
    : j_(j), ok_(j.is_object()), path_(std::move(path)), errors_(errors) {
  if (!ok_)
    errors_.push_back((path_.empty() ? std::string("config") : path_) +
                      ": expected a JSON object, got " + describe(j));
}

std::string JsonObjectReader::field_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

const nlohmann::json* JsonObjectReader::find(const char* key) {
  known_.push_back(key);
  if (!ok_) return nullptr;
  auto it = j_.find(key);
  return it == j_.end() ? nullptr : &*it;
}

const nlohmann::json* JsonObjectReader::raw(const char* key) {
  return find(key);
}

void JsonObjectReader::type_error(const char* key, const char* expected, const nlohmann::json& v) {
  errors_.push_back(field_path(key) + ": expected " + expected + ", got " + describe(v));
}

void JsonObjectReader::get(const char* key, int64_t& out) {
  const nlohmann::json* v = find(key);
  if (!v) return;
  if (v->is_number_integer() &&
      !(v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))) {
    out = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             std::floor(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9.0e18) {
    out = int64_t(v->get<double>());  // e.g. 1e3 written for an integer field
  } else {
    type_error(key, "integer", *v);
  }
}

void JsonObjectReader::get(const char* key, double& out) {
  const nlohmann::json* v = find(key);
  if (!v) return;
  if (v->is_number())
    out = v->get<double>();
  else
    type_error(key, "number", *v);
}

void JsonObjectReader::get(const char* key, bool& out) {
  const nlohmann::json* v = find(key);
  if (!v) return;
  if (v->is_boolean())
    out = v->get<bool>();
  else
    type_error(key, "boolean (true/false)", *v);
}

void JsonObjectReader::get(const char* key, std::string& out) {
  const nlohmann::json* v = find(key);
  if (!v) return;
  if (v->is_string())
    out = v->get<std::string>();
  else
    type_error(key, "string", *v);
}

namespace {

// Shared body of the nullable getters: null unsets, anything else must be a
// valid T (the member get() records the error, reworded to allow null).
template <class T>
void get_nullable(JsonObjectReader& r, const char* key, const nlohmann::json* v,
                  std::optional<T>& out, std::vector<std::string>& errors,
                  std::vector<std::string>& known, const char* what) {
  if (!v) return;
  if (v->is_null()) {
    out.reset();
    return;
  }
  size_t n = errors.size();
  T x{};
  known.pop_back();  // the nested get() records the key again
  r.get(key, x);
  if (errors.size() == n)
    out = std::move(x);
  else
    errors.back() = r.field_path(key) + ": expected " + what + " or null, got " + describe(*v);
}

}  // namespace

void JsonObjectReader::get(const char* key, std::optional<int64_t>& out) {
  get_nullable(*this, key, find(key), out, errors_, known_, "integer");
}

void JsonObjectReader::get(const char* key, std::optional<std::string>& out) {
  get_nullable(*this, key, find(key), out, errors_, known_, "string");
}

void JsonObjectReader::hint(const std::string& alias, const std::string& suggestion) {
  hints_.emplace_back(alias, suggestion);
}

void JsonObjectReader::finish() {
  if (!ok_) return;
  for (auto& [k, v] : j_.items()) {
    if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
    std::string msg = (path_.empty() ? std::string() : path_ + ": ") + "unknown key '" + k + "'";
    std::string best;
    for (auto& [alias, suggestion] : hints_)
      if (alias == k) best = suggestion;
    if (best.empty()) best = closest_name(k, known_);
    if (!best.empty()) {
      msg += "; did you mean '" + best + "'?";
    } else {
      msg += "; known keys: ";
      for (size_t i = 0; i < known_.size(); ++i) msg += (i ? ", " : "") + known_[i];
    }
    errors_.push_back(msg);
  }
}

// ---------------------------------------------------------------- JSON

std::vector<std::string> block_config_field_names() {
  std::vector<std::string> names;
  BlockConfig b;
  visit_fields(b, [&](const char* key, const auto&) { names.push_back(key); });
  return names;
}

std::vector<std::string> model_config_field_names() {
  return {"name",           "block",         "vocab_size",     "n_layers",
          "tie_embeddings", "block_configs", "mup_base_width", "mtp_n_predict",
          "mtp_lambda",     "init_std",      "hybrid_pattern", "embed_scale"};
}

void to_json(nlohmann::json& j, const BlockConfig& b) {
  j = block_to<nlohmann::json>(b, nullptr);
}

void from_json(const nlohmann::json& j, BlockConfig& b) {
  std::vector<std::string> errors;
  read_block(j, "", b, errors);
  throw_if(errors);
}

void to_json(nlohmann::json& j, const ModelConfig& m) {
  j = model_to<nlohmann::json>(m);
}

nlohmann::ordered_json model_config_to_ordered_json(const ModelConfig& m) {
  return model_to<nlohmann::ordered_json>(m);
}

void read_model_config(const nlohmann::json& j, const std::string& path, ModelConfig& m,
                       std::vector<std::string>& errors) {
  JsonObjectReader r(j, path, errors);
  r.get("name", m.name);
  if (const nlohmann::json* b = r.raw("block"))
    read_block(*b, r.field_path("block"), m.block, errors);
  r.get("vocab_size", m.vocab_size);
  r.get("n_layers", m.n_layers);
  r.get("tie_embeddings", m.tie_embeddings);
  if (const nlohmann::json* bc = r.raw("block_configs")) {
    if (bc->is_null()) {
      m.block_configs.clear();
    } else if (!bc->is_array()) {
      errors.push_back(r.field_path("block_configs") +
                       ": expected array of block overrides or null, got " + describe(*bc));
    } else {
      m.block_configs.clear();
      for (size_t i = 0; i < bc->size(); ++i) {
        BlockConfig layer = m.block;  // each entry overrides the shared block
        read_block((*bc)[i], r.field_path("block_configs") + "[" + std::to_string(i) + "]", layer,
                   errors);
        m.block_configs.push_back(layer);
      }
    }
  }
  r.get("mup_base_width", m.mup_base_width);
  r.get("mtp_n_predict", m.mtp_n_predict);
  r.get("mtp_lambda", m.mtp_lambda);
  r.get("init_std", m.init_std);
  r.get("embed_scale", m.embed_scale);
  r.get("hybrid_pattern", m.hybrid_pattern);
  // Flat configs (like the perf reference JSONs) put block fields at the top.
  for (auto& f : block_config_field_names()) r.hint(f, "block." + f);
  r.hint("seq_len", "block.max_seq_len");
  r.finish();
}

void from_json(const nlohmann::json& j, ModelConfig& m) {
  std::vector<std::string> errors;
  read_model_config(j, "", m, errors);
  throw_if(errors);
}

void upgrade_legacy_model_json(nlohmann::json& model) {
  if (model.is_object() && model.contains("block") && model["block"].is_object() &&
      !model["block"].contains("sinusoidal_vaswani"))
    model["block"]["sinusoidal_vaswani"] = true;
}

ModelConfig model_config_from_json(const nlohmann::json& j) {
  ModelConfig m;
  from_json(j, m);
  return m;
}

nlohmann::json model_config_to_json(const ModelConfig& m) {
  return m;
}

nlohmann::json read_json_file(const std::string& path) {
  std::string text;
  try {
    text = read_regular_file(path, int64_t(16) << 20);  // a config is a few KB
    check_json_depth(text, path);
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // also out_of_range: 1e400
    // e.what() looks like "[json.exception.parse_error.101] parse error at line 3, column 5: ..."
    std::string what = e.what();
    auto pos = what.find("] ");
    throw ConfigError(
        path + ": invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
}

namespace {
template <class J>
void write_json(const std::string& path, const J& j) {
  std::ofstream out(path);
  if (!out) throw ConfigError(path + ": cannot open file for writing");
  out << j.dump(2) << "\n";
  out.flush();
  if (!out) throw ConfigError(path + ": write failed");
}
}  // namespace

void write_json_file(const std::string& path, const nlohmann::json& j) {
  write_json(path, j);
}
void write_json_file(const std::string& path, const nlohmann::ordered_json& j) {
  write_json(path, j);
}

ModelConfig load_model_config(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  ModelConfig m;
  std::vector<std::string> errors;
  read_model_config(j, "", m, errors);
  if (errors.empty()) errors = validation_errors(m);
  for (auto& e : errors) e = path + ": " + e;
  throw_if(errors);
  return m;
}

void save_model_config(const std::string& path, const ModelConfig& m) {
  write_json_file(path, model_config_to_ordered_json(m));
}

// ---------------------------------------------------------------- validation

namespace {

// Collects rule violations with field paths relative to one BlockConfig.
struct Checker {
  const std::string& prefix;
  std::vector<std::string>& errors;

  std::string p(const char* field) const {
    return prefix.empty() ? std::string(field) : prefix + "." + field;
  }
  void positive(const char* field, int64_t v) {
    if (v <= 0) errors.push_back(p(field) + " (" + std::to_string(v) + ") must be > 0");
  }
  void positive(const char* field, const std::optional<int64_t>& v) {
    if (v && *v <= 0)
      errors.push_back(p(field) + " (" + std::to_string(*v) + ") must be > 0 when set");
  }
  void positive(const char* field, double v) {
    if (!(v > 0) || !std::isfinite(v))
      errors.push_back(p(field) + " (" + num(v) + ") must be a finite number > 0");
  }
  void at_most(const char* field, int64_t v, int64_t limit) {
    if (v > limit)
      errors.push_back(p(field) + " (" + std::to_string(v) +
                       ") must be <= " + std::to_string(limit));
  }
  void at_most(const char* field, const std::optional<int64_t>& v, int64_t limit) {
    if (v) at_most(field, *v, limit);
  }
  static std::string num(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  }
  static std::string num(int64_t v) { return std::to_string(v); }
};

template <class T>
void check_component(Checker& c, const char* field, const std::string& name,
                     const Registry<T>& reg) {
  if (!reg.contains(name)) c.errors.push_back(c.p(field) + ": " + reg.unknown_message(name));
}

}  // namespace

std::vector<std::string> validation_errors(const BlockConfig& b, const std::string& path) {
  std::vector<std::string> errors;
  Checker c{path, errors};
  auto add = [&](const std::string& s) { errors.push_back(s); };
  auto n = [](int64_t v) { return std::to_string(v); };

  check_component(c, "attention", b.attention, attention_registry());
  check_component(c, "ffn", b.ffn, ffn_registry());
  check_component(c, "norm", b.norm, norm_registry());
  check_component(c, "position", b.position, position_registry());

  // Sizes.
  c.positive("d_model", b.d_model);
  c.positive("n_heads", b.n_heads);
  c.positive("n_kv_heads", b.n_kv_heads);
  c.positive("d_ff", b.d_ff);
  c.positive("max_seq_len", b.max_seq_len);
  c.at_most("d_model", b.d_model, ModelLimits::kDModel);
  c.at_most("n_heads", b.n_heads, ModelLimits::kHeads);
  c.at_most("n_kv_heads", b.n_kv_heads, ModelLimits::kHeads);
  c.at_most("d_ff", b.d_ff, ModelLimits::kDFF);
  c.at_most("max_seq_len", b.max_seq_len, ModelLimits::kSeqLen);
  c.at_most("n_experts", b.n_experts, ModelLimits::kExperts);
  // An explicit head_dim frees the heads from dividing the model width.
  if (b.d_model > 0 && b.n_heads > 0 && b.d_model % b.n_heads != 0 && !b.head_dim_override)
    add(c.p("d_model") + " (" + n(b.d_model) + ") must be divisible by " + c.p("n_heads") + " (" +
        n(b.n_heads) + ") unless " + c.p("head_dim") + " is set");
  if (b.n_heads > 0 && b.n_kv_heads && *b.n_kv_heads > 0) {
    if (b.n_heads % *b.n_kv_heads != 0)
      add(c.p("n_heads") + " (" + n(b.n_heads) + ") must be divisible by " + c.p("n_kv_heads") +
          " (" + n(*b.n_kv_heads) + ")");
    // MHA always uses n_heads K/V heads; a different n_kv_heads would be silently ignored.
    if (b.attention == "mha" && *b.n_kv_heads != b.n_heads)
      add(c.p("n_kv_heads") + " (" + n(*b.n_kv_heads) + ") must equal " + c.p("n_heads") + " (" +
          n(b.n_heads) + ") for attention 'mha'; use 'gqa' for fewer K/V heads");
  }

  // Scalars.
  if (!(b.dropout >= 0.0 && b.dropout < 1.0))
    add(c.p("dropout") + " (" + Checker::num(b.dropout) + ") must be in [0, 1)");
  c.positive("norm_eps", b.norm_eps);
  c.positive("rope_theta", b.rope_theta);
  if (b.position == "rope" && b.d_model > 0 && b.n_heads > 0 &&
      (b.head_dim_override || b.d_model % b.n_heads == 0) && b.head_dim() > 0 &&
      b.head_dim() % 2 != 0)
    add(c.p("position") + " 'rope' needs an even head_dim, got " +
        (b.head_dim_override ? c.p("head_dim") : std::string("d_model/n_heads")) + " = " +
        n(b.head_dim()));

  // Options of the GQA-family attentions, the FFN and the norm.
  const bool gqa_family = b.attention == "mha" || b.attention == "gqa" ||
                          b.attention == "gated_gqa" || b.attention == "sliding_window_gqa" ||
                          b.attention == "local_gqa" || b.attention == "chunked_gqa" ||
                          b.attention == "sparse_gqa";
  c.positive("head_dim", b.head_dim_override);
  c.at_most("head_dim", b.head_dim_override, ModelLimits::kDModel);
  if (b.head_dim_override && !gqa_family)
    add(c.p("head_dim") +
        " is only supported by the GQA-family attentions (mha, gqa, gated_gqa, "
        "sliding_window_gqa, local_gqa, chunked_gqa, sparse_gqa), not '" +
        b.attention + "'");
  if (b.qkv_bias && !gqa_family)
    add(c.p("qkv_bias") + " is only supported by the GQA-family attentions, not '" + b.attention +
        "'");
  if (b.ffn_activation) {
    const std::string& a = *b.ffn_activation;
    const bool ok = (b.ffn == "standard" && (a == "gelu" || a == "gelu_tanh")) ||
                    (b.ffn == "gated" && (a == "silu" || a == "gelu_tanh"));
    if (!ok)
      add(c.p("ffn_activation") + " '" + a + "' is not supported by ffn '" + b.ffn +
          "' (standard: gelu | gelu_tanh; gated: silu | gelu_tanh; other FFNs: unset)");
  }
  if (b.norm_unit_offset && b.norm != "rms_norm")
    add(c.p("norm_unit_offset") + " is only supported by norm 'rms_norm', not '" + b.norm + "'");

  // Local attention.
  if (b.window_size && *b.window_size < 1)
    add(c.p("window_size") + " (" + n(*b.window_size) + ") must be >= 1 when set");
  if (b.attention_chunk_size && *b.attention_chunk_size < 1)
    add(c.p("attention_chunk_size") + " (" + n(*b.attention_chunk_size) +
        ") must be >= 1 when set");
  if (b.attention == "sliding_window_gqa" && !b.window_size)
    add(c.p("window_size") + " must be set for attention 'sliding_window_gqa'");
  if (b.attention == "chunked_gqa" && !b.attention_chunk_size)
    add(c.p("attention_chunk_size") + " must be set for attention 'chunked_gqa'");

  // MLA.
  c.positive("kv_lora_rank", b.kv_lora_rank);
  c.positive("q_lora_rank", b.q_lora_rank);
  c.positive("rope_dim", b.rope_dim);
  if (b.rope_dim && *b.rope_dim > 0 && *b.rope_dim % 2 != 0)
    add(c.p("rope_dim") + " (" + n(*b.rope_dim) + ") must be even (RoPE rotates pairs)");
  if (b.attention == "mla") {
    if (!b.kv_lora_rank) add(c.p("kv_lora_rank") + " must be set for attention 'mla'");
    // rope_dim is separate from head_dim (DeepSeek V3: 128 + 64), so no bound between them.
    // MLA rotates only its decoupled rope_dim part and cannot add ALiBi biases.
    if (b.position == "rope" && !b.rope_dim)
      add(c.p("rope_dim") + " must be set for attention 'mla' with position 'rope' (MLA applies " +
          "RoPE only to its decoupled rope_dim part)");
    if (b.position == "alibi")
      add(c.p("position") + " 'alibi' is not supported by attention 'mla'");
    if (b.qk_norm) add(c.p("qk_norm") + " is not supported by attention 'mla'");
  }

  // Mixture of experts.
  c.positive("n_experts", b.n_experts);
  c.positive("top_k_experts", b.top_k_experts);
  if (b.n_experts && *b.n_experts > 0 && b.top_k_experts > *b.n_experts)
    add(c.p("n_experts") + " (" + n(*b.n_experts) + ") must be >= " + c.p("top_k_experts") + " (" +
        n(b.top_k_experts) + ")");
  if (b.n_shared_experts && *b.n_shared_experts < 0)
    add(c.p("n_shared_experts") + " (" + n(*b.n_shared_experts) + ") must be >= 0 when set");
  c.positive("moe_latent_size", b.moe_latent_size);
  c.positive("moe_d_ff", b.moe_d_ff);
  c.positive("shared_expert_d_ff", b.shared_expert_d_ff);
  c.positive("moe_routed_scaling_factor", b.moe_routed_scaling_factor);
  c.positive("moe_n_groups", b.moe_n_groups);
  c.positive("moe_topk_groups", b.moe_topk_groups);
  if (b.moe_n_groups > 0 && b.moe_topk_groups > b.moe_n_groups)
    add(c.p("moe_topk_groups") + " (" + n(b.moe_topk_groups) +
        ") must be <= " + c.p("moe_n_groups") + " (" + n(b.moe_n_groups) + ")");
  if (b.n_experts && *b.n_experts > 0 && b.moe_n_groups > 0 && *b.n_experts % b.moe_n_groups != 0)
    add(c.p("n_experts") + " (" + n(*b.n_experts) + ") must be divisible by " +
        c.p("moe_n_groups") + " (" + n(b.moe_n_groups) + ")");
  for (auto [field, v] : {std::pair<const char*, double>{"moe_aux_loss_coef", b.moe_aux_loss_coef},
                          {"moe_z_loss_coef", b.moe_z_loss_coef},
                          {"moe_bias_update_rate", b.moe_bias_update_rate}})
    if (!(v >= 0) || !std::isfinite(v))
      add(c.p(field) + " (" + Checker::num(v) + ") must be a finite number >= 0");
  // The MoE components: moe, shared_moe (DeepSeek V3), latent_moe (Nemotron-H).
  if (b.ffn == "moe" || b.ffn == "shared_moe" || b.ffn == "latent_moe") {
    const std::string for_ffn = " for ffn '" + b.ffn + "'";
    if (!b.n_experts) add(c.p("n_experts") + " is required" + for_ffn);
    // Group-limited routing must leave at least top_k experts to choose from.
    if (b.ffn != "moe" && b.n_experts && *b.n_experts > 0 && b.moe_n_groups > 0 &&
        *b.n_experts % b.moe_n_groups == 0 && b.moe_topk_groups <= b.moe_n_groups &&
        b.moe_topk_groups * (*b.n_experts / b.moe_n_groups) < b.top_k_experts)
      add(c.p("top_k_experts") + " (" + n(b.top_k_experts) +
          ") must be <= " + c.p("moe_topk_groups") + " * experts per group (" +
          n(b.moe_topk_groups * (*b.n_experts / b.moe_n_groups)) + ")" + for_ffn);
    if (b.ffn == "latent_moe" && !b.moe_latent_size && b.d_model > 0 && b.d_model / 4 < 1)
      add(c.p("moe_latent_size") + " must be set when " + c.p("d_model") + " (" + n(b.d_model) +
          ") < 4" + for_ffn + " (unset = d_model / 4)");
  }

  // Short convolution (DeltaNet, Mamba).
  c.positive("conv_kernel_size", b.conv_kernel_size);
  if (b.attention == "gated_deltanet" && b.use_short_conv && b.conv_kernel_size == 1)
    add(c.p("conv_kernel_size") +
        " (1) must be >= 2 for attention 'gated_deltanet' with use_short_conv (a 1-tap conv "
        "sees no earlier tokens)");

  // Mamba.
  c.positive("mamba_n_heads", b.mamba_n_heads);
  c.positive("mamba_head_dim", b.mamba_head_dim);
  c.positive("ssm_state_size", b.ssm_state_size);
  c.positive("mamba_expand", b.mamba_expand);
  c.positive("mamba_n_groups", b.mamba_n_groups);
  c.positive("mamba_chunk_size", b.mamba_chunk_size);
  if (b.attention == "mamba2" || b.attention == "mamba3") {
    // Heads = mamba_n_heads or n_heads; head dim = mamba_head_dim or inner / heads, with
    // inner = mamba_expand * d_model; heads * head dim must equal inner.
    int64_t heads = b.mamba_n_heads ? *b.mamba_n_heads : b.n_heads;
    std::string where = path.empty() ? std::string() : path + ": ";
    const int64_t inner = b.mamba_expand * b.d_model;
    if (heads > 0 && b.d_model > 0 && b.mamba_expand > 0) {
      if (!b.mamba_head_dim && inner % heads != 0)
        add(where + c.p("mamba_expand") + " * " + c.p("d_model") + " (" + n(inner) +
            ") must be divisible by the mamba heads (" + n(heads) + ") when " +
            c.p("mamba_head_dim") + " is unset");
      int64_t hd = b.mamba_head_dim ? *b.mamba_head_dim : inner / heads;
      if (b.mamba_head_dim && hd > 0 && heads * hd != inner)
        add(where + "mamba heads (" + n(heads) + ") * mamba head dim (" + n(hd) + ") must equal " +
            c.p("mamba_expand") + " * " + c.p("d_model") + " (" + n(inner) + "); set " +
            c.p("mamba_n_heads") + " / " + c.p("mamba_head_dim"));
      if (b.mamba_n_groups > 0 && heads % b.mamba_n_groups != 0)
        add(where + "mamba heads (" + n(heads) + ") must be divisible by " + c.p("mamba_n_groups") +
            " (" + n(b.mamba_n_groups) + ")");
    }
    if (b.attention == "mamba3" && b.mamba_complex_a && b.ssm_state_size > 0 &&
        b.ssm_state_size % 2 != 0)
      add(c.p("ssm_state_size") + " (" + n(b.ssm_state_size) + ") must be even for " +
          c.p("mamba_complex_a") + " (B/C are rotated in pairs)");
  }

  // Sparse attention.
  c.positive("sparse_compress_ratio", b.sparse_compress_ratio);
  c.positive("sparse_select_k", b.sparse_select_k);
  if (b.attention == "sparse_gqa") {
    if (!b.sparse_compress_ratio)
      add(c.p("sparse_compress_ratio") + " must be set for attention 'sparse_gqa'");
    if (!b.sparse_select_k) add(c.p("sparse_select_k") + " must be set for attention 'sparse_gqa'");
    // ALiBi would bias only the window branch: rejected rather than half applied.
    if (b.position == "alibi")
      add(c.p("position") + " 'alibi' is not supported by attention 'sparse_gqa'");
  }
  return errors;
}

std::vector<std::string> validation_errors(const ModelConfig& m, const std::string& path) {
  std::vector<std::string> errors;
  Checker c{path, errors};
  auto n = [](int64_t v) { return std::to_string(v); };

  c.positive("vocab_size", m.vocab_size);
  c.positive("n_layers", m.n_layers);
  c.at_most("vocab_size", m.vocab_size, ModelLimits::kVocab);
  c.at_most("n_layers", m.n_layers, ModelLimits::kLayers);
  auto be = validation_errors(m.block, c.p("block"));
  errors.insert(errors.end(), be.begin(), be.end());

  if (!m.block_configs.empty()) {
    if (int64_t(m.block_configs.size()) != m.n_layers)
      errors.push_back(c.p("block_configs") + " has " + n(int64_t(m.block_configs.size())) +
                       " entries but " + c.p("n_layers") + " is " + n(m.n_layers));
    for (size_t i = 0; i < m.block_configs.size(); ++i) {
      const BlockConfig& b = m.block_configs[i];
      std::string p = c.p("block_configs") + "[" + std::to_string(i) + "]";
      auto le = validation_errors(b, p);
      errors.insert(errors.end(), le.begin(), le.end());
      // All layers share the residual stream and the embedding.
      if (b.d_model != m.block.d_model)
        errors.push_back(p + ".d_model (" + n(b.d_model) + ") must equal " + c.p("block") +
                         ".d_model (" + n(m.block.d_model) +
                         "): all layers share the residual stream");
    }
  }

  c.positive("mup_base_width", m.mup_base_width);
  if (m.mtp_n_predict < 0)
    errors.push_back(c.p("mtp_n_predict") + " (" + n(m.mtp_n_predict) + ") must be >= 0");
  if (!(m.mtp_lambda >= 0) || !std::isfinite(m.mtp_lambda))
    errors.push_back(c.p("mtp_lambda") + " (" + Checker::num(m.mtp_lambda) +
                     ") must be a finite number >= 0");
  c.positive("init_std", m.init_std);
  c.positive("embed_scale", m.embed_scale);

  if (!m.hybrid_pattern.empty()) {
    for (size_t i = 0; i < m.hybrid_pattern.size(); ++i) {
      char ch = m.hybrid_pattern[i];
      if (ch != 'M' && ch != 'E' && ch != '*' && ch != '-')
        errors.push_back(c.p("hybrid_pattern") + "[" + std::to_string(i) +
                         "]: invalid character '" + std::string(1, ch) +
                         "'; allowed: M (Mamba), E (MoE), * (attention), - (MLP)");
    }
    if (int64_t(m.hybrid_pattern.size()) != m.n_layers) {
      errors.push_back(c.p("hybrid_pattern") + " has " + n(int64_t(m.hybrid_pattern.size())) +
                       " characters but " + c.p("n_layers") + " is " + n(m.n_layers));
    } else if (errors.empty()) {
      // The layers the pattern makes must be valid too (e.g. 'E' needs n_experts).
      for (int64_t i = 0; i < m.n_layers; ++i) {
        const char kind = m.hybrid_pattern[size_t(i)];
        auto le =
            validation_errors(m.get_block_config(i), c.p("hybrid_pattern") + "[" + n(i) + "] ('" +
                                                         std::string(1, kind) + "' layer)");
        errors.insert(errors.end(), le.begin(), le.end());
      }
    }
  }
  return errors;
}

void validate(const BlockConfig& b) {
  throw_if(validation_errors(b));
}
void validate(const ModelConfig& m) {
  throw_if(validation_errors(m));
}

}  // namespace bl
