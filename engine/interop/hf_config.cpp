#include "interop/hf_config.h"

#include <cmath>
#include <set>

namespace bl {

namespace {

using json = nlohmann::json;

// Fields that describe the checkpoint, the tokenizer or generation defaults,
// never the function a forward pass computes.
const std::set<std::string> kHarmless = {
    "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "bos_token_id",
    "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "initializer_range",
    "use_cache", "_name_or_path", "name_or_path", "tokenizer_class", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "id2label", "label2id",
    "problem_type", "task_specific_params", "max_length", "finetuning_task",
    "chunk_size_feed_forward", "prefix", "_attn_implementation_autoset",
    // Written by nanotron / transformers.js exporters
    // (e.g. SmolLM); transformers never reads them.
    "is_llama_config", "rope_interleaved", "transformers.js_config"};

// Strict reader of one config.json: every field is either read (and checked)
// or listed as harmless; anything else is refused in finish().
class Reader {
 public:
  Reader(const json& j, std::string what, std::string family)
      : j_(j), what_(std::move(what)), family_(std::move(family)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw HfError(what_ + ": " + family_ + " field '" + field + "' " + problem);
  }
  const json* find(const std::string& key) {
    seen_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  int64_t integer(const std::string& key, std::optional<int64_t> dflt = std::nullopt) {
    const json* v = find(key);
    if (!v || v->is_null()) {
      if (!dflt) fail(key, "is missing");
      return *dflt;
    }
    if (!v->is_number_integer()) fail(key, "must be an integer, got " + v->dump());
    const int64_t x = v->get<int64_t>();
    if (x < 0) fail(key, "must not be negative, got " + v->dump());
    return x;
  }
  double number(const std::string& key, double dflt) {
    const json* v = find(key);
    if (!v || v->is_null()) return dflt;
    if (!v->is_number()) fail(key, "must be a number, got " + v->dump());
    const double x = v->get<double>();
    if (!std::isfinite(x)) fail(key, "must be finite");
    return x;
  }
  bool boolean(const std::string& key, bool dflt) {
    const json* v = find(key);
    if (!v || v->is_null()) return dflt;
    if (!v->is_boolean()) fail(key, "must be true or false, got " + v->dump());
    return v->get<bool>();
  }
  std::string string(const std::string& key, const std::string& dflt) {
    const json* v = find(key);
    if (!v || v->is_null()) return dflt;
    if (!v->is_string()) fail(key, "must be a string, got " + v->dump());
    return v->get<std::string>();
  }
  // A field Blocklab computes only at one value (e.g. hidden_act "silu").
  template <class T>
  void require(const std::string& key, const T& got, const T& want, const std::string& why) {
    if (got != want) fail(key, "= " + json(got).dump() + " is not supported: " + why);
  }
  void must_be_null(const std::string& key, const std::string& why) {
    const json* v = find(key);
    if (v && !v->is_null()) fail(key, "= " + v->dump() + " is not supported: " + why);
  }
  void accept(std::initializer_list<const char*> keys) {
    for (const char* k : keys) seen_.insert(k);
  }
  void finish() {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!seen_.count(it.key()) && !kHarmless.count(it.key()))
        fail(it.key(),
             "is unknown to Blocklab's " + family_ +
                 " mapping (it might change the function; refusing rather than guessing)");
  }

 private:
  const json& j_;
  std::string what_, family_;
  std::set<std::string> seen_;
};

const char* kFamilies = "gpt2, llama, mistral, qwen2, qwen3, gemma, mixtral";

void check_architectures(Reader& r, const json& j, HfFamily f) {
  const json* a = r.find("architectures");
  if (!a || a->is_null()) return;
  if (!a->is_array() || a->empty()) r.fail("architectures", "must be a non-empty list");
  for (const json& x : *a) {
    const bool ok =
        x.is_string() && (x.get<std::string>() == hf_architecture(f) ||
                          (f == HfFamily::kGpt2 && x.get<std::string>() == "GPT2Model"));
    if (!ok)
      r.fail("architectures",
             "= " + a->dump() + ": only " + hf_architecture(f) +
                 " is supported for this model_type (a different head computes something else)");
  }
  (void)j;
}

ModelConfig gpt2_from_hf(Reader& r) {
  ModelConfig m;
  BlockConfig& b = m.block;
  b.attention = "mha";
  b.ffn = "standard";
  b.norm = "layer_norm";
  b.position = "learned";
  b.bias = true;
  b.pre_norm = true;
  m.vocab_size = r.integer("vocab_size", 50257);
  b.max_seq_len = r.integer("n_positions", 1024);
  b.d_model = r.integer("n_embd", 768);
  m.n_layers = r.integer("n_layer", 12);
  b.n_heads = r.integer("n_head", 12);
  b.d_ff = r.integer("n_inner", 4 * b.d_model);
  b.norm_eps = r.number("layer_norm_epsilon", 1e-5);
  // GPT-2's default is the tanh form; "gelu" is the exact erf one.
  const std::string act = r.string("activation_function", "gelu_new");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh")
    b.ffn_activation = "gelu_tanh";
  else if (act != "gelu")
    r.fail("activation_function",
           "= \"" + act + "\" is not supported (gelu, gelu_new, gelu_pytorch_tanh)");
  r.require("scale_attn_weights", r.boolean("scale_attn_weights", true), true,
            "Blocklab always scales attention scores by 1/sqrt(head_dim)");
  r.require("scale_attn_by_inverse_layer_idx", r.boolean("scale_attn_by_inverse_layer_idx", false),
            false, "Blocklab has no per-layer attention scaling");
  r.require("add_cross_attention", r.boolean("add_cross_attention", false), false,
            "a decoder-only model has no cross-attention");
  r.require("tie_word_embeddings", r.boolean("tie_word_embeddings", true), true,
            "GPT2LMHeadModel ties its LM head to wte");
  // Dropout (training only; Blocklab imports with none), the legacy context
  // length and the unused double-heads summary fields.
  r.accept({"resid_pdrop", "embd_pdrop", "attn_pdrop", "n_ctx", "reorder_and_upcast_attn",
            "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
            "summary_first_dropout"});
  m.tie_embeddings = true;
  return m;
}

ModelConfig llama_like_from_hf(Reader& r, HfFamily f) {
  ModelConfig m;
  BlockConfig& b = m.block;
  b.attention = "gqa";
  b.ffn = "gated";
  b.norm = "rms_norm";
  b.position = "rope";
  b.pre_norm = true;
  b.bias = false;
  const bool mixtral = f == HfFamily::kMixtral;
  // transformers' defaults for fields a config.json may leave out.
  const bool gemma = f == HfFamily::kGemma, qwen2 = f == HfFamily::kQwen2;
  m.vocab_size = r.integer("vocab_size", gemma ? 256000 : qwen2 ? 151936 : 32000);
  b.d_model = r.integer("hidden_size");
  b.d_ff = r.integer("intermediate_size");
  m.n_layers = r.integer("num_hidden_layers");
  b.n_heads = r.integer("num_attention_heads");
  b.n_kv_heads = r.integer("num_key_value_heads", b.n_heads);
  b.max_seq_len = r.integer("max_position_embeddings", f == HfFamily::kLlama ? 2048
                                                       : gemma               ? 8192
                                                       : qwen2               ? 32768
                                                                             : 4096);
  b.norm_eps = r.number("rms_norm_eps", mixtral ? 1e-5 : 1e-6);
  b.rope_theta = r.number("rope_theta", mixtral ? 1e6 : 10000.0);
  if (!gemma) m.tie_embeddings = r.boolean("tie_word_embeddings", false);
  if (b.n_heads <= 0) r.fail("num_attention_heads", "must be positive");
  // head_dim: Gemma's defaults to 256; elsewhere hidden_size / heads.
  const json* hd = r.find("head_dim");
  if ((hd && !hd->is_null()) || gemma) {
    const int64_t h = r.integer("head_dim", gemma ? std::optional<int64_t>(256) : std::nullopt);
    if (h <= 0) r.fail("head_dim", "must be positive");
    if (b.d_model % b.n_heads != 0 || h != b.d_model / b.n_heads) b.head_dim_override = h;
  } else if (b.d_model % b.n_heads != 0) {
    r.fail("num_attention_heads", "must divide hidden_size when head_dim is not given");
  }
  // The MLP's gate activation. Gemma reads hidden_activation (always a tanh
  // GELU in practice; transformers forces it when unset), the others hidden_act.
  auto gate_act = [&](const std::string& key, const std::string& a) {
    if (a == "gelu_pytorch_tanh" || a == "gelu_new")
      b.ffn_activation = "gelu_tanh";
    else if (a != "silu")
      r.fail(key, "= \"" + a + "\" is not supported (silu, gelu_pytorch_tanh, gelu_new)");
  };
  if (gemma) {
    r.string("hidden_act", "gelu");  // unused by GemmaMLP when hidden_activation is set
    gate_act("hidden_activation", r.string("hidden_activation", "gelu_pytorch_tanh"));
  } else {
    gate_act("hidden_act", r.string("hidden_act", "silu"));
  }
  r.must_be_null("rope_scaling", "Blocklab's RoPE has no frequency scaling");
  r.require<int64_t>("pretraining_tp", r.integer("pretraining_tp", 1), 1,
                     "only the unsplit projection is exact");
  r.accept({"attention_dropout"});  // training only
  if (f == HfFamily::kLlama) {
    const bool ab = r.boolean("attention_bias", false), mb = r.boolean("mlp_bias", false);
    // Blocklab's `bias` puts a bias in every Linear: both or neither.
    if (ab != mb)
      r.fail("mlp_bias", "= " + json(mb).dump() + " with attention_bias " + json(ab).dump() +
                             " is not supported: Blocklab biases all projections or none");
    b.bias = ab;
  }
  if (gemma) {
    r.require("attention_bias", r.boolean("attention_bias", false), false,
              "Gemma's MLP has no bias, and Blocklab biases q/k/v alone or every projection");
    b.norm_unit_offset = true;
    m.embed_scale = std::sqrt(double(b.d_model));
    m.tie_embeddings = r.boolean("tie_word_embeddings", true);
  }
  if (f == HfFamily::kQwen2) b.qkv_bias = true;  // Qwen2Attention: q/k/v biased, o_proj not
  if (f == HfFamily::kQwen3 || f == HfFamily::kQwen2) {
    if (f == HfFamily::kQwen3)
      r.require("attention_bias", r.boolean("attention_bias", false), false,
                "the Qwen3 MLP has no bias, and Blocklab biases q/k/v alone or every projection");
    r.require("use_sliding_window", r.boolean("use_sliding_window", false), false,
              "per-layer sliding windows are not mapped");
    if (const json* lt = r.find("layer_types"); lt && !lt->is_null()) {
      if (!lt->is_array()) r.fail("layer_types", "must be a list");
      for (const json& t : *lt)
        if (t != "full_attention")
          r.fail("layer_types", "= " + t.dump() + " is not supported (only full_attention)");
    }
    r.accept({"sliding_window", "max_window_layers"});  // unused without use_sliding_window
    b.qk_norm = f == HfFamily::kQwen3;
  }
  if (f == HfFamily::kMistral || mixtral) {
    const json* w = r.find("sliding_window");
    if (w && !w->is_null()) {
      if (!w->is_number_integer() || w->get<int64_t>() <= 0)
        r.fail("sliding_window", "must be a positive integer or null, got " + w->dump());
      b.attention = "sliding_window_gqa";
      b.window_size = w->get<int64_t>();
    }
  }
  if (mixtral) {
    b.ffn = "moe";
    b.n_experts = r.integer("num_local_experts", 8);
    b.top_k_experts = r.integer("num_experts_per_tok", 2);
    if (b.top_k_experts < 2)
      r.fail("num_experts_per_tok",
             "= " + std::to_string(b.top_k_experts) +
                 " is not supported: with one expert per token Blocklab gates by the router "
                 "probability, Mixtral by 1");
    b.moe_d_ff = b.d_ff;
    b.moe_aux_loss_coef = r.number("router_aux_loss_coef", 0.001);
    b.moe_z_loss_coef = 0.0;  // Mixtral trains without a router z-loss
    r.accept({"output_router_logits", "router_jitter_noise"});
  }
  return m;
}

}  // namespace

namespace {
// Each family's config.json "model_type" and transformers class.
struct FamilyNames {
  HfFamily family;
  const char* model_type;
  const char* architecture;
};
constexpr FamilyNames kFamilyNames[] = {
    {HfFamily::kGpt2, "gpt2", "GPT2LMHeadModel"},
    {HfFamily::kLlama, "llama", "LlamaForCausalLM"},
    {HfFamily::kMistral, "mistral", "MistralForCausalLM"},
    {HfFamily::kQwen2, "qwen2", "Qwen2ForCausalLM"},
    {HfFamily::kQwen3, "qwen3", "Qwen3ForCausalLM"},
    {HfFamily::kGemma, "gemma", "GemmaForCausalLM"},
    {HfFamily::kMixtral, "mixtral", "MixtralForCausalLM"},
};
const FamilyNames* names_of(HfFamily f) {
  for (const FamilyNames& n : kFamilyNames)
    if (n.family == f) return &n;
  return nullptr;
}
}  // namespace

std::string hf_model_type(HfFamily f) {
  const FamilyNames* n = names_of(f);
  return n ? n->model_type : "?";
}

std::string hf_architecture(HfFamily f) {
  const FamilyNames* n = names_of(f);
  return n ? n->architecture : "?";
}

HfModelConfig model_config_from_hf(const json& j, const std::string& what) {
  if (!j.is_object()) throw HfError(what + ": not a JSON object");
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string())
    throw HfError(what + ": field 'model_type' is missing or not a string (supported: " +
                  std::string(kFamilies) + ")");
  const std::string type = mt->get<std::string>();
  HfModelConfig out;
  const FamilyNames* known = nullptr;
  for (const FamilyNames& n : kFamilyNames)
    if (type == n.model_type) known = &n;
  if (known)
    out.family = known->family;
  else if (type.rfind("gemma", 0) == 0)
    throw HfError(what + ": model_type '" + type +
                  "' is not supported: only Gemma 1 ('gemma') is mapped; Gemma 2 and 3 add "
                  "logit soft-capping, alternating sliding windows and extra norms");
  else
    throw HfError(what + ": model_type '" + type +
                  "' is not supported (supported: " + std::string(kFamilies) + ")");
  Reader r(j, what, type);
  check_architectures(r, j, out.family);
  out.model = out.family == HfFamily::kGpt2 ? gpt2_from_hf(r) : llama_like_from_hf(r, out.family);
  r.finish();
  out.model.name = "hf-" + type;
  try {
    validate(out.model);
  } catch (const ConfigError& e) {
    throw HfError(what + ": the mapped " + type + " config is invalid: " + e.what());
  }
  return out;
}

namespace {

[[noreturn]] void refuse(const std::string& why) {
  throw HfError("cannot export to Hugging Face: " + why +
                " (exportable: GPT-2, LLaMA, Mistral, Qwen2, Qwen3, Gemma, Mixtral layouts; see "
                "docs/huggingface.md)");
}

// The function-relevant part of a config as JSON, for comparing a model with
// its HF round trip: training-only knobs and fields the components ignore are dropped.
json comparable(const ModelConfig& m) {
  json j = model_config_to_json(m);
  for (const char* k : {"name", "init_std", "mtp_lambda"}) j.erase(k);
  json& b = j["block"];
  for (const char* k : {"dropout", "moe_aux_loss_coef", "moe_z_loss_coef", "moe_bias_update_rate"})
    b.erase(k);
  if (m.block.position != "rope") b.erase("rope_theta");
  if (m.block.position != "sinusoidal") b.erase("sinusoidal_vaswani");
  b["n_kv_heads"] = m.block.effective_n_kv_heads();
  if (m.block.attention == "mha") b["attention"] = "gqa";  // MHA is GQA with n_heads K/V heads
  // Spelled-out defaults compute the same function as unset ones.
  const BlockConfig& mb = m.block;
  if (mb.ffn_activation == (mb.ffn == "standard" ? "gelu" : "silu")) b.erase("ffn_activation");
  if (mb.head_dim_override && mb.n_heads > 0 && mb.d_model % mb.n_heads == 0 &&
      *mb.head_dim_override == mb.d_model / mb.n_heads)
    b.erase("head_dim");
  if (mb.bias) b["qkv_bias"] = false;  // redundant when every projection is biased
  if (m.block.ffn == "moe") {          // the experts' width is all a plain MoE reads
    b["moe_d_ff"] = b["d_ff"] = m.block.moe_d_ff.value_or(m.block.d_ff);
  } else {
    b.erase("moe_d_ff");
  }
  return j;
}

}  // namespace

HfModelConfig hf_family_of(const ModelConfig& m) {
  const BlockConfig& b = m.block;
  if (!m.block_configs.empty()) refuse("model.block_configs: per-layer blocks have no HF layout");
  if (!m.hybrid_pattern.empty()) refuse("model.hybrid_pattern: hybrid layers have no HF layout");
  if (m.mtp_n_predict != 0) refuse("model.mtp_n_predict: multi-token heads have no HF layout");
  if (m.mup_base_width || b.mup) refuse("muP scaling has no HF equivalent");
  if (!b.pre_norm) refuse("model.block.pre_norm = false (post-norm) has no HF layout here");
  HfModelConfig out;
  out.model = m;
  const std::string layout = "attention '" + b.attention + "', ffn '" + b.ffn + "', norm '" +
                             b.norm + "', position '" + b.position + "'";
  const bool attn_gqa = b.attention == "gqa" || b.attention == "mha";
  if (attn_gqa && b.ffn == "standard" && b.norm == "layer_norm" && b.position == "learned")
    out.family = HfFamily::kGpt2;
  else if (b.norm == "rms_norm" && b.position == "rope" && b.ffn == "gated" && attn_gqa)
    out.family = b.norm_unit_offset      ? HfFamily::kGemma
                 : b.qk_norm             ? HfFamily::kQwen3
                 : b.qkv_bias && !b.bias ? HfFamily::kQwen2
                                         : HfFamily::kLlama;
  else if (b.norm == "rms_norm" && b.position == "rope" && b.ffn == "gated" &&
           b.attention == "sliding_window_gqa")
    out.family = HfFamily::kMistral;
  else if (b.norm == "rms_norm" && b.position == "rope" && b.ffn == "moe" &&
           (attn_gqa || b.attention == "sliding_window_gqa"))
    out.family = HfFamily::kMixtral;
  else
    refuse("no supported HF family has the layout " + layout);
  return out;
}

nlohmann::ordered_json hf_config_from_model(const ModelConfig& m, const std::string& torch_dtype) {
  const HfFamily f = hf_family_of(m).family;
  const BlockConfig& b = m.block;
  nlohmann::ordered_json j;
  j["architectures"] = {hf_architecture(f)};
  j["model_type"] = hf_model_type(f);
  if (f == HfFamily::kGpt2) {
    j["vocab_size"] = m.vocab_size;
    j["n_positions"] = b.max_seq_len;
    j["n_ctx"] = b.max_seq_len;
    j["n_embd"] = b.d_model;
    j["n_layer"] = m.n_layers;
    j["n_head"] = b.n_heads;
    j["n_inner"] = b.d_ff;
    j["activation_function"] = b.ffn_activation == "gelu_tanh" ? "gelu_new" : "gelu";
    j["layer_norm_epsilon"] = b.norm_eps;
    j["resid_pdrop"] = 0.0;
    j["embd_pdrop"] = 0.0;
    j["attn_pdrop"] = 0.0;
    j["scale_attn_weights"] = true;
    j["scale_attn_by_inverse_layer_idx"] = false;
    j["reorder_and_upcast_attn"] = false;
    j["tie_word_embeddings"] = m.tie_embeddings;
  } else {
    j["vocab_size"] = m.vocab_size;
    j["hidden_size"] = b.d_model;
    j["intermediate_size"] = b.ffn == "moe" ? b.moe_d_ff.value_or(b.d_ff) : b.d_ff;
    j["num_hidden_layers"] = m.n_layers;
    j["num_attention_heads"] = b.n_heads;
    j["num_key_value_heads"] = b.effective_n_kv_heads();
    j["head_dim"] = b.head_dim();
    const char* act = b.ffn_activation == "gelu_tanh" ? "gelu_pytorch_tanh" : "silu";
    j["hidden_act"] = act;
    if (f == HfFamily::kGemma) j["hidden_activation"] = act;  // what GemmaMLP reads
    j["max_position_embeddings"] = b.max_seq_len;
    j["rms_norm_eps"] = b.norm_eps;
    j["rope_theta"] = b.rope_theta;
    j["rope_scaling"] = nullptr;
    j["tie_word_embeddings"] = m.tie_embeddings;
    j["attention_dropout"] = 0.0;
    if (f == HfFamily::kLlama) {
      j["attention_bias"] = b.bias;
      j["mlp_bias"] = b.bias;
    }
    if (f == HfFamily::kQwen3 || f == HfFamily::kGemma) j["attention_bias"] = b.bias;
    if (f == HfFamily::kQwen3 || f == HfFamily::kQwen2) {
      j["use_sliding_window"] = false;
      j["sliding_window"] = nullptr;
    }
    if (f == HfFamily::kMistral || f == HfFamily::kMixtral)
      j["sliding_window"] = b.attention == "sliding_window_gqa" && b.window_size
                                ? nlohmann::ordered_json(*b.window_size)
                                : nlohmann::ordered_json(nullptr);
    if (f == HfFamily::kMixtral) {
      j["num_local_experts"] = b.n_experts.value_or(0);
      j["num_experts_per_tok"] = b.top_k_experts;
      j["router_aux_loss_coef"] = b.moe_aux_loss_coef;
      j["output_router_logits"] = false;
    }
  }
  j["torch_dtype"] = torch_dtype;
  // The exact-function check: the config read back must be this model.
  ModelConfig back;
  try {
    back = model_config_from_hf(json::parse(j.dump()), "config.json").model;
  } catch (const HfError& e) {
    refuse(std::string("the model does not fit HF ") + hf_model_type(f) + ": " + e.what());
  }
  const json want = comparable(m), got = comparable(back);
  for (auto it = want.begin(); it != want.end(); ++it) {
    if (it.key() == "block") continue;
    if (!got.contains(it.key()) || got[it.key()] != it.value())
      refuse("model." + it.key() + " = " + it.value().dump() + " has no " + hf_model_type(f) +
             " equivalent");
  }
  for (auto it = got.begin(); it != got.end(); ++it)
    if (!want.contains(it.key()))
      refuse("model." + it.key() + " is unset but HF " + hf_model_type(f) + " sets it to " +
             it.value().dump());
  const json& wb = want["block"];
  const json& gb = got["block"];
  for (auto it = wb.begin(); it != wb.end(); ++it)
    if (!gb.contains(it.key()) || gb[it.key()] != it.value())
      refuse("model.block." + it.key() + " = " + it.value().dump() + " has no " + hf_model_type(f) +
             " equivalent" +
             (gb.contains(it.key())
                  ? " (HF " + hf_model_type(f) + " computes " + gb[it.key()].dump() + ")"
                  : ""));
  for (auto it = gb.begin(); it != gb.end(); ++it)
    if (!wb.contains(it.key()))
      refuse("model.block." + it.key() + " is unset but HF " + hf_model_type(f) + " sets it to " +
             it.value().dump());
  return j;
}

}  // namespace bl
