// Model configuration: lmxlab's BlockConfig / ModelConfig with the same field
// names and defaults, strict JSON (de)serialisation and validation.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace bl {

/// Any configuration problem (bad JSON, unknown key, wrong type, failed rule).
/// what() holds one line per problem; errors() holds the lines separately.
class ConfigError : public std::invalid_argument {
 public:
  explicit ConfigError(const std::string& message);
  explicit ConfigError(std::vector<std::string> errors);
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::vector<std::string> errors_;
};

/// One transformer block (lmxlab.core.config.BlockConfig). Components are
/// looked up by name in the registries of core/components.h.
struct BlockConfig {
  std::string attention = "mha";        // attention_registry() name
  std::string ffn = "standard";         // ffn_registry() name
  std::string norm = "layer_norm";      // norm_registry() name
  std::string position = "sinusoidal";  // position_registry() name
  int64_t d_model = 512;
  int64_t n_heads = 8;
  std::optional<int64_t> n_kv_heads;  // unset = n_heads (MHA)
  // Width of one attention head; unset = d_model / n_heads. GQA-family
  // attentions only (Gemma: 256 with d_model 2048 and 8 heads; Qwen3).
  std::optional<int64_t> head_dim_override;
  int64_t d_ff = 2048;
  bool bias = true;       // bias in every Linear (and LayerNorm's shift)
  bool qkv_bias = false;  // bias on the q/k/v projections alone (Qwen2); GQA family
  // The FFN's activation; unset = the component's own (standard: "gelu", the
  // exact erf form; gated: "silu", SwiGLU). "gelu_tanh" is the tanh
  // approximation (GPT-2's gelu_new; gated: Gemma's GeGLU).
  std::optional<std::string> ffn_activation;
  // rms_norm computes x / rms(x) * (1 + weight), weight initialised to 0 (Gemma).
  bool norm_unit_offset = false;
  double dropout = 0.0;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  // Position "sinusoidal": false (default) = MLX's SinusoidalPositionalEncoding
  // as lmxlab uses it (scale sqrt(2/d), frequencies 2pi * [1 ... 1e-4], sin
  // half then cos half); true = Vaswani et al.'s interleaved table at unit
  // amplitude, which swamps embeddings initialised at std 0.02.
  bool sinusoidal_vaswani = false;
  int64_t max_seq_len = 2048;
  bool pre_norm = true;  // false = post-norm
  // Sliding-window attention: attend to the last window_size tokens (incl. self).
  std::optional<int64_t> window_size;
  // Multi-head latent attention (MLA).
  std::optional<int64_t> kv_lora_rank;
  std::optional<int64_t> q_lora_rank;
  std::optional<int64_t> rope_dim;  // decoupled RoPE dims per head
  // Mixture of experts.
  std::optional<int64_t> n_experts;
  int64_t top_k_experts = 2;
  std::optional<int64_t> n_shared_experts;
  // Gated DeltaNet (linear attention) short convolution.
  int64_t conv_kernel_size = 4;
  bool use_short_conv = false;
  // Mamba-2 / Mamba-3 (SSM).
  std::optional<int64_t> mamba_n_heads;   // unset = n_heads
  std::optional<int64_t> mamba_head_dim;  // unset = mamba_expand * d_model / mamba heads
  int64_t ssm_state_size = 128;
  int64_t mamba_expand = 2;  // inner width = mamba_expand * d_model
  int64_t mamba_n_groups = 1;
  int64_t mamba_chunk_size = 128;
  bool mamba_bc_norm = false;      // RMSNorm on B and C (Mamba-3)
  bool mamba_trapezoidal = false;  // trapezoidal discretisation (Mamba-3)
  bool mamba_complex_a = false;    // data-dependent RoPE on B and C (Mamba-3)
  // Latent MoE / grouped routing.
  std::optional<int64_t> moe_latent_size;
  std::optional<int64_t> moe_d_ff;            // expert width; unset = d_ff
  std::optional<int64_t> shared_expert_d_ff;  // unset = expert width
  double moe_routed_scaling_factor = 1.0;
  int64_t moe_n_groups = 1;
  int64_t moe_topk_groups = 1;
  // MoE training knobs (Blocklab extras; lmxlab has none).
  double moe_aux_loss_coef = 0.01;     // 'moe': load-balancing loss weight (Switch / Mixtral)
  double moe_z_loss_coef = 0.001;      // 'moe': router z-loss weight (ST-MoE)
  double moe_bias_update_rate = 1e-3;  // shared/latent MoE: expert-bias step per optimizer step

  bool qk_norm = false;  // per-head RMSNorm on Q and K before RoPE (OLMo 2)
  // Chunked local attention: attend only within fixed chunks of this size.
  std::optional<int64_t> attention_chunk_size;
  bool mup = false;  // muP attention scale 1/head_dim instead of 1/sqrt(head_dim)
  // Sparse (compressed / selected) attention.
  std::optional<int64_t> sparse_compress_ratio;
  std::optional<int64_t> sparse_select_k;

  /// n_kv_heads, or n_heads when unset.
  int64_t effective_n_kv_heads() const { return n_kv_heads ? *n_kv_heads : n_heads; }
  /// head_dim_override, else d_model / n_heads (integer division, like lmxlab).
  int64_t head_dim() const {
    return head_dim_override ? *head_dim_override : n_heads > 0 ? d_model / n_heads : 0;
  }

  bool operator==(const BlockConfig&) const = default;
};

/// A whole language model (lmxlab.core.config.ModelConfig) plus Blocklab extras.
struct ModelConfig {
  BlockConfig block;  // shared by all layers unless block_configs is given
  int64_t vocab_size = 32000;
  int64_t n_layers = 6;
  bool tie_embeddings = true;
  /// Per-layer blocks; empty = every layer uses `block`. When non-empty it has
  /// exactly n_layers entries. In JSON each entry is a partial override of `block`.
  std::vector<BlockConfig> block_configs;
  std::optional<int64_t> mup_base_width;  // set = muP with this base width
  int64_t mtp_n_predict = 0;              // multi-token-prediction heads; 0 = off
  double mtp_lambda = 0.1;                // MTP auxiliary loss weight

  // --- Blocklab extras ---
  /// Display name (presets set it to the preset name); free text.
  std::string name;
  /// Weights init N(0, init_std); attention/FFN output projections use
  /// init_std / sqrt(2 * n_layers) (GPT-2 / nanoGPT residual scaling).
  double init_std = 0.02;
  /// Token embeddings are multiplied by this before the first block (Gemma:
  /// sqrt(d_model)); the tied LM head reads the unscaled table.
  double embed_scale = 1.0;
  /// Optional per-layer layout string, one character per layer (Nemotron-H
  /// style), applied on top of block / block_configs[i]:
  ///   'M' mamba2 mixer only, '*' attention only (the layer's attention, or gqa
  ///   when that is not an attention), '-' dense FFN only (the layer's ffn, or
  ///   relu2 when that is none or a MoE), 'E' MoE FFN only (the layer's ffn when
  ///   it is a MoE kind, else moe). Empty = unused.
  std::string hybrid_pattern;

  /// The block config of layer `layer`: block_configs[layer] (or block), with
  /// hybrid_pattern[layer] applied when a pattern is set.
  BlockConfig get_block_config(int64_t layer) const;
  /// muP width multiplier d_model / mup_base_width; 1.0 without muP.
  double width_mult() const;

  bool operator==(const ModelConfig&) const = default;
};

/// `b` turned into the layer kind of hybrid-pattern character `kind` (see
/// ModelConfig::hybrid_pattern). Unknown characters leave it unchanged.
BlockConfig apply_hybrid_kind(BlockConfig b, char kind);

// ---------------------------------------------------------------- JSON

/// Full BlockConfig as JSON (unset optionals omitted).
void to_json(nlohmann::json& j, const BlockConfig& b);
/// Overlays the fields present in `j` onto `b` (nlohmann's get<> starts from
/// defaults). Throws ConfigError on unknown keys or wrong types.
void from_json(const nlohmann::json& j, BlockConfig& b);
/// ModelConfig as JSON; block_configs entries are written as overrides of `block`.
void to_json(nlohmann::json& j, const ModelConfig& m);
/// Overlays the fields present in `j` onto `m`. Throws ConfigError.
void from_json(const nlohmann::json& j, ModelConfig& m);

/// Parses into `m` (overlaying present fields), appending problems to `errors`
/// with field paths prefixed by `path` (e.g. "model"). For nested configs.
void read_model_config(const nlohmann::json& j, const std::string& path, ModelConfig& m,
                       std::vector<std::string>& errors);
/// Parses a ModelConfig (missing fields keep their defaults). Structure and
/// types are checked (all problems reported at once); rules are not: see validate().
ModelConfig model_config_from_json(const nlohmann::json& j);
/// Serialises a ModelConfig (same as to_json).
nlohmann::json model_config_to_json(const ModelConfig& m);
/// Same content as model_config_to_json, keys in declaration order (for files).
nlohmann::ordered_json model_config_to_ordered_json(const ModelConfig& m);
/// Reads, parses and validates a ModelConfig JSON file. Errors name the file.
ModelConfig load_model_config(const std::string& path);
/// Writes the config as indented JSON. Throws ConfigError if the file can't be written.
void save_model_config(const std::string& path, const ModelConfig& m);

/// Reads a JSON file; ConfigError naming the file on a missing file or bad syntax.
nlohmann::json read_json_file(const std::string& path);
/// Writes indented JSON (plus newline); ConfigError naming the file on failure.
void write_json_file(const std::string& path, const nlohmann::json& j);
void write_json_file(const std::string& path, const nlohmann::ordered_json& j);

/// JSON keys of a BlockConfig, in declaration order.
std::vector<std::string> block_config_field_names();
/// Model JSON written before "sinusoidal_vaswani" existed (every writer since
/// spells out every block field) meant the Vaswani table: sets it where absent.
void upgrade_legacy_model_json(nlohmann::json& model);

/// JSON keys of a ModelConfig (top level), in declaration order.
std::vector<std::string> model_config_field_names();

// ---------------------------------------------------------------- validation

/// Upper bounds of model sizes. Far above anything this engine trains, low
/// enough that products of them stay far from int64 overflow, so a typo
/// (d_model 1e9, n_layers 1e6) fails as a rule naming the field and the limit
/// instead of in bad_alloc. Whether a valid model fits in memory is the run
/// launcher's memory estimate (run/memory_estimate.h).
struct ModelLimits {
  static constexpr int64_t kDModel = 65536;
  static constexpr int64_t kHeads = 4096;  // n_heads, n_kv_heads
  static constexpr int64_t kDFF = 1 << 20;
  static constexpr int64_t kSeqLen = 1 << 20;  // max_seq_len
  static constexpr int64_t kLayers = 4096;
  static constexpr int64_t kVocab = 1 << 24;
  static constexpr int64_t kExperts = 65536;
};

/// Every rule violated by `b`, one message each; field paths start with `path`
/// (e.g. "block" or "block_configs[2]"; empty = bare field names).
std::vector<std::string> validation_errors(const BlockConfig& b, const std::string& path = "");
/// Every rule violated by `m` (including its blocks), one message each; field
/// paths start with `path` (e.g. "model"; empty = "block.d_model", ...).
std::vector<std::string> validation_errors(const ModelConfig& m, const std::string& path = "");
/// Throws ConfigError listing every violated rule.
void validate(const BlockConfig& b);
/// Throws ConfigError listing every violated rule.
void validate(const ModelConfig& m);

/// `b` turned into the layer kind of hybrid-pattern character `kind` (see
/// ModelConfig::hybrid_pattern). Unknown characters leave it unchanged.
BlockConfig apply_hybrid_kind(BlockConfig b, char kind);

// ---------------------------------------------------------------- JSON helpers

/// Strict reader for one JSON object, shared by the config parsers. Each get()
/// reads one known key if present; problems go to `errors` with the field path.
class JsonObjectReader {
 public:
  /// Reports an error (and reads nothing) if `j` is not an object.
  JsonObjectReader(const nlohmann::json& j, std::string path, std::vector<std::string>& errors);
  void get(const char* key, int64_t& out);
  void get(const char* key, double& out);
  void get(const char* key, bool& out);
  void get(const char* key, std::string& out);
  void get(const char* key, std::optional<int64_t>& out);      // null = unset
  void get(const char* key, std::optional<std::string>& out);  // null = unset
  /// Marks `key` as known and returns its value, or null if absent.
  const nlohmann::json* raw(const char* key);
  /// "path.key" (or "key" at the top level).
  std::string field_path(const std::string& key) const;
  /// For unknown key `alias`, suggest `suggestion` (e.g. "lr" -> "learning_rate",
  /// "d_model" -> "block.d_model") instead of the closest known key.
  void hint(const std::string& alias, const std::string& suggestion);
  /// Reports every key not read: "<path>: unknown key 'x'; did you mean 'y'?".
  void finish();

 private:
  const nlohmann::json* find(const char* key);
  void type_error(const char* key, const char* expected, const nlohmann::json& v);
  const nlohmann::json& j_;
  bool ok_;
  std::string path_;
  std::vector<std::string>& errors_;
  std::vector<std::string> known_;
  std::vector<std::pair<std::string, std::string>> hints_;
};

/// The candidate `name` was most likely meant to be: smallest edit distance
/// among those within max(2, len/3) edits or containing `name` as a
/// subsequence ("windw" -> "window_size"); "" if none is close.
std::string closest_name(const std::string& name, const std::vector<std::string>& candidates);
/// Edit (Levenshtein) distance.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace bl
