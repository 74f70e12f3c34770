#include "lora/adapter_io.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/linear.h"
#include "export/llama_gguf_names.h"
#include "io/bounded_read.h"
#include "io/file_manifest.h"
#include "io/gguf_reader.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "quant/quantize.h"
#include "train/checkpoint.h"

namespace bl {

namespace fs = std::filesystem;

namespace {
constexpr const char* kPeftPrefix = "base_model.model.";
constexpr const char* kSafetensorsFile = "adapter_model.safetensors";
constexpr const char* kConfigFile = "adapter_config.json";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// module == name, or module ends in "." + name.
bool names_module(const std::string& module, const std::string& name) {
  if (module == name) return true;
  return module.size() > name.size() && ends_with(module, name) &&
         module[module.size() - name.size() - 1] == '.';
}

std::string last_name(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string shape_str(std::initializer_list<int64_t> s) {
  std::string out = "[";
  for (int64_t d : s) out += (out.size() > 1 ? ", " : "") + std::to_string(d);
  return out + "]";
}

// PEFT module key (rank_pattern / alpha_pattern): the tensor name without prefix and suffix.
std::string peft_module(const std::string& path) {
  std::string n = peft_tensor_name(path, "lora_A");
  n = n.substr(std::strlen(kPeftPrefix));
  return n.substr(0, n.size() - std::strlen(".lora_A.weight"));
}

// Numbers from adapter_config.json: converting an out-of-range double to an
// integer or a float is undefined behaviour, so the range is checked first.
int64_t json_int(const nlohmann::json& v, const std::string& what) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(INT64_MAX))
    return int64_t(v.get<uint64_t>());
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9.0e18) return int64_t(d);
  }
  throw AdapterError(what + " must be an integer, got " + v.dump());
}

float json_float(const nlohmann::json& v, const std::string& what) {
  if (!v.is_number()) throw AdapterError(what + " must be a number, got " + v.dump());
  const double d = v.get<double>();
  if (!std::isfinite(d) || std::abs(d) > 3.0e38)
    throw AdapterError(what + " (" + v.dump() + ") is out of range");
  return float(d);
}

// A PEFT regex from adapter_config.json: matched in polynomial time (libstdc++'s
// Thompson-NFA executor: no back-references) and without counted repetition
// ("{n}" expands the automaton n-fold per nesting level).
std::regex peft_regex(const std::string& re) {
  return std::regex(re, std::regex::ECMAScript | std::regex_constants::__polynomial);
}

// adapter_config.json's options beyond r and lora_alpha, read as PEFT reads them.
struct PeftOptions {
  bool rslora = false;
  nlohmann::json target_modules;  // null (any), a regex string, or a list of suffixes
  nlohmann::json rank_pattern = nlohmann::json::object(), alpha_pattern = nlohmann::json::object();

  // PEFT: key k matches module m when m fully matches "(.*\.)?(k)".
  static bool key_matches(const std::string& key, const std::string& module) {
    if (names_module(module, key)) return true;
    try {
      return std::regex_match(module, peft_regex("(.*\\.)?(" + key + ")"));
    } catch (const std::regex_error&) {
      return false;  // checked when the config is read
    }
  }
  const nlohmann::json* pattern_value(const nlohmann::json& p, const std::string& module) const {
    for (auto it = p.begin(); it != p.end(); ++it)
      if (key_matches(it.key(), module)) return &it.value();
    return nullptr;
  }
  bool targets(const std::string& module) const {
    if (target_modules.is_null()) return true;
    if (target_modules.is_string())
      return std::regex_match(module, peft_regex(target_modules.get<std::string>()));
    for (const auto& t : target_modules)
      if (names_module(module, t.get<std::string>())) return true;
    return false;
  }
};

// Regexes come from the file: bounded in length and checked to compile, so a
// hostile config gets an error naming the key, not a hang or a crash.
void check_regex(const std::string& re, const std::string& where) {
  if (re.size() > 256) throw AdapterError(where + " is longer than 256 characters");
  if (re.find('{') != std::string::npos)
    throw AdapterError(where + " uses counted repetition ({n}), which is not supported");
  try {
    peft_regex("(.*\\.)?(" + re + ")");
  } catch (const std::regex_error& e) {
    throw AdapterError(where + " is not a valid regular expression (" + e.what() + ")");
  }
}

PeftOptions peft_options(const nlohmann::json& cfg, const std::string& file) {
  auto unsupported = [&](const std::string& key, const std::string& what) {
    throw AdapterError(file + ": " + key + ": " + what +
                       " is not supported (Blocklab loads plain LoRA adapters)");
  };
  PeftOptions o;
  try {
    if (cfg.value("use_dora", false)) unsupported("use_dora", "DoRA");
    if (cfg.contains("modules_to_save") && !cfg["modules_to_save"].is_null() &&
        !(cfg["modules_to_save"].is_array() && cfg["modules_to_save"].empty()))
      unsupported("modules_to_save", "fully trained extra modules");
    if (cfg.value("bias", std::string("none")) != "none")
      unsupported("bias", "training biases ('" + cfg["bias"].get<std::string>() + "')");
    if (cfg.value("lora_bias", false)) unsupported("lora_bias", "a bias on lora_B");
    if (cfg.contains("layer_replication") && !cfg["layer_replication"].is_null())
      unsupported("layer_replication", "layer replication");
    o.rslora = cfg.value("use_rslora", false);
    (void)cfg.value("fan_in_fan_out", false);  // a bool; A and B keep their shapes either way
    if (cfg.contains("target_modules")) {
      o.target_modules = cfg["target_modules"];
      if (o.target_modules.is_string())
        check_regex(o.target_modules.get<std::string>(), file + ": target_modules");
      else if (o.target_modules.is_array())
        for (const auto& t : o.target_modules) (void)t.get<std::string>();
      else if (!o.target_modules.is_null())
        throw AdapterError(file + ": target_modules must be a string (regex) or a list of names");
    }
    for (const char* key : {"rank_pattern", "alpha_pattern"}) {
      nlohmann::json p = cfg.value(key, nlohmann::json::object());
      if (p.is_null()) p = nlohmann::json::object();
      if (!p.is_object()) throw AdapterError(file + ": " + key + " must be an object");
      for (auto it = p.begin(); it != p.end(); ++it) {
        check_regex(it.key(), file + ": " + key + " key '" + it.key() + "'");
        if (!it.value().is_number())
          throw AdapterError(file + ": " + key + "['" + it.key() + "'] must be a number");
      }
      (std::string(key) == "rank_pattern" ? o.rank_pattern : o.alpha_pattern) = p;
    }
  } catch (const nlohmann::json::exception& e) {
    throw AdapterError(file + ": " + e.what());
  }
  return o;
}

std::vector<std::string> target_modules_of(const Adapter& ad) {
  std::set<std::string> names;
  for (auto& [path, l] : ad.layers) names.insert(last_name(path));
  return {names.begin(), names.end()};
}
}  // namespace

std::string peft_tensor_name(const std::string& path, const std::string& which) {
  return kPeftPrefix + checkpoint_tensor_name(path + "." + which + ".weight");
}

Adapter extract_adapter(Module& model) {
  Adapter ad;
  for (auto& [path, l] : named_linears(model)) {
    const LoraAdapter* a = l->lora();
    if (!a) continue;
    AdapterLayer x;
    x.rank = a->rank;
    x.alpha = a->alpha;
    x.in = l->in_features();
    x.out = l->out_features();
    x.a.assign(a->a->data(), a->a->data() + a->a->numel());
    x.b.assign(a->b->data(), a->b->data() + a->b->numel());
    if (ad.layers.empty()) {
      ad.rank = x.rank;
      ad.alpha = x.alpha;
    }
    ad.layers.emplace(path, std::move(x));
  }
  ad.target_modules = target_modules_of(ad);
  return ad;
}

void attach_adapter(Module& model, const Adapter& ad) {
  std::map<std::string, Linear*> linears;
  for (auto& [path, l] : named_linears(model)) linears[path] = l;
  for (auto& [path, x] : ad.layers) {
    const std::string ta = peft_tensor_name(path, "lora_A"), tb = peft_tensor_name(path, "lora_B");
    auto it = linears.find(path);
    if (it == linears.end())
      throw AdapterError("adapter tensor '" + ta +
                         "' names no Linear layer of the model (module '" + path + "')");
    Linear* l = it->second;
    if (x.in != l->in_features())
      throw AdapterError("adapter tensor '" + ta + "' has shape " + shape_str({x.rank, x.in}) +
                         " but layer '" + path + "' needs " +
                         shape_str({x.rank, l->in_features()}));
    if (x.out != l->out_features())
      throw AdapterError("adapter tensor '" + tb + "' has shape " + shape_str({x.out, x.rank}) +
                         " but layer '" + path + "' needs " +
                         shape_str({l->out_features(), x.rank}));
    if (l->lora() && l->lora()->rank != x.rank)
      throw AdapterError("adapter tensor '" + ta + "' has rank " + std::to_string(x.rank) +
                         " but layer '" + path + "' carries a rank-" +
                         std::to_string(l->lora()->rank) + " adapter");
  }
  bool added = false;
  for (auto& [path, x] : ad.layers) {
    Linear* l = linears[path];
    if (!l->lora()) {
      if (!added) {  // as apply_lora: only adapters train
        std::vector<Parameter*> keep;
        for (auto& [name, p] : lora_parameters(model)) keep.push_back(p);
        for (Parameter* p : model.parameters()) p->set_trainable(false);
        for (Parameter* p : keep) p->set_trainable(true);
      }
      added = true;
      Rng rng(0);
      l->add_lora(x.rank, x.alpha, rng);
    }
    l->set_lora_alpha(x.alpha);  // alpha is part of the adapter
    std::copy(x.a.begin(), x.a.end(), l->lora()->a->data());
    std::copy(x.b.begin(), x.b.end(), l->lora()->b->data());
  }
  rename_parameters(model);
}

// ---------------------------------------------------------------- PEFT

void write_peft_adapter(const std::string& dir, const Adapter& ad) {
  if (ad.layers.empty()) throw AdapterError(dir + ": the model has no LoRA adapters to save");
  fs::create_directories(dir);
  std::vector<TensorView> views;
  nlohmann::json rank_pattern = nlohmann::json::object(), alpha_pattern = nlohmann::json::object();
  for (auto& [path, x] : ad.layers) {
    views.push_back({peft_tensor_name(path, "lora_A"), {x.rank, x.in}, x.a.data()});
    views.push_back({peft_tensor_name(path, "lora_B"), {x.out, x.rank}, x.b.data()});
    if (x.rank != ad.rank) rank_pattern[peft_module(path)] = x.rank;
    if (x.alpha != ad.alpha) alpha_pattern[peft_module(path)] = x.alpha;
  }
  write_safetensors((fs::path(dir) / kSafetensorsFile).string(), views, {{"format", "pt"}});
  nlohmann::json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", ad.rank},
      {"lora_alpha", ad.alpha},
      {"target_modules", target_modules_of(ad)},
      {"rank_pattern", rank_pattern},
      {"alpha_pattern", alpha_pattern},
      {"lora_dropout", 0.0},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"use_rslora", false},
      {"use_dora", false},
      {"modules_to_save", nullptr},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"base_model_name_or_path",
       ad.base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(ad.base_model)}};
  const fs::path cfg_path = fs::path(dir) / kConfigFile;
  std::ofstream f(cfg_path);
  f << cfg.dump(2) << "\n";
  f.close();
  if (!f) throw AdapterError(cfg_path.string() + ": cannot write");
  try {  // read_peft_adapter verifies both files against it
    write_manifest(dir, {kSafetensorsFile, kConfigFile});
  } catch (const std::exception& e) {
    throw AdapterError(e.what());
  }
}

Adapter read_peft_adapter(const std::string& dir) {
  // Written by Blocklab: an edited or bit-flipped file is refused naming it.
  // (PEFT's own directories have no manifest; other files may sit beside ours.)
  if (has_manifest(dir)) {
    try {
      verify_manifest(dir, "", "adapter", /*exact=*/false);
    } catch (const std::exception& e) {
      throw AdapterError(e.what());
    }
  }
  const fs::path cfg_path = fs::path(dir) / kConfigFile;
  std::string text;
  try {
    text = read_regular_file(cfg_path.string(), int64_t(16) << 20);
    check_json_depth(text, cfg_path.string());
  } catch (const std::runtime_error& e) {
    throw AdapterError("cannot read " + std::string(e.what()) + " (not a PEFT adapter directory?)");
  }
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw AdapterError(cfg_path.string() + ": invalid JSON: " + e.what());
  }
  Adapter ad;
  try {
    if (cfg.value("peft_type", std::string("LORA")) != "LORA")
      throw AdapterError(cfg_path.string() + ": peft_type is not LORA");
    ad.rank = json_int(cfg.at("r"), cfg_path.string() + ": r");
    ad.alpha = json_float(cfg.at("lora_alpha"), cfg_path.string() + ": lora_alpha");
  } catch (const nlohmann::json::exception& e) {
    throw AdapterError(cfg_path.string() + ": needs integer \"r\" and number \"lora_alpha\" (" +
                       e.what() + ")");
  }
  try {
    check_lora_alpha(ad.alpha, cfg_path.string() + ": lora_alpha");
  } catch (const std::invalid_argument& e) {
    throw AdapterError(e.what());
  }
  const PeftOptions peft = peft_options(cfg, cfg_path.string());
  const nlohmann::json& rp = peft.rank_pattern;
  const nlohmann::json& ap = peft.alpha_pattern;
  if (cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string())
    ad.base_model = cfg["base_model_name_or_path"].get<std::string>();
  const std::string st_path = (fs::path(dir) / kSafetensorsFile).string();
  SafetensorsFile st = read_safetensors(st_path);
  try {
    require_finite(st, st_path);
  } catch (const FormatError& e) {
    throw AdapterError(e.what());
  }
  const std::string suffix_a = ".lora_A.weight", suffix_b = ".lora_B.weight";
  for (auto& [name, t] : st.tensors) {
    const bool is_a = ends_with(name, suffix_a);
    if (!is_a && !ends_with(name, suffix_b))
      throw AdapterError(st_path + ": tensor '" + name + "' is not a lora_A / lora_B weight");
    if (name.rfind(kPeftPrefix, 0) != 0)
      throw AdapterError(st_path + ": tensor '" + name + "' does not start with '" + kPeftPrefix +
                         "'");
    const std::string hf = name.substr(std::strlen(kPeftPrefix));
    auto internal = internal_tensor_name(hf);
    if (!internal)
      throw AdapterError(st_path + ": tensor '" + name + "' has no module path this model uses");
    const std::string path = internal->substr(0, internal->size() - suffix_a.size());
    if (t.shape.size() != 2) throw AdapterError(st_path + ": tensor '" + name + "' must be 2-D");
    AdapterLayer& x = ad.layers[path];
    if (is_a) {
      x.a = std::move(t.data);
      x.rank = t.shape[0];
      x.in = t.shape[1];
    } else {
      x.b = std::move(t.data);
      x.out = t.shape[0];
      if (x.rank && x.rank != t.shape[1])
        throw AdapterError(st_path + ": tensor '" + name + "' has rank " +
                           std::to_string(t.shape[1]) + " but its lora_A has rank " +
                           std::to_string(x.rank));
      x.rank = t.shape[1];
    }
  }
  for (auto& [path, x] : ad.layers) {
    const std::string module = peft_module(path);
    if (x.a.empty() || x.b.empty())
      throw AdapterError(st_path + ": '" +
                         peft_tensor_name(path, x.a.empty() ? "lora_A" : "lora_B") +
                         "' is missing");
    if (int64_t(x.b.size()) != x.out * x.rank || int64_t(x.a.size()) != x.rank * x.in)
      throw AdapterError(st_path + ": '" + peft_tensor_name(path, "lora_B") + "' has rank " +
                         std::to_string(int64_t(x.b.size()) / std::max<int64_t>(x.out, 1)) +
                         " but its lora_A has rank " + std::to_string(x.rank));
    if (!peft.targets(module))
      throw AdapterError(cfg_path.string() + ": target_modules does not cover '" + module +
                         "', which " + kSafetensorsFile + " adapts");
    const nlohmann::json* r = peft.pattern_value(rp, module);
    const int64_t expect =
        r ? json_int(*r, cfg_path.string() + ": rank_pattern for '" + module + "'") : ad.rank;
    if (x.rank != expect)
      throw AdapterError(st_path + ": tensor '" + peft_tensor_name(path, "lora_A") + "' has rank " +
                         std::to_string(x.rank) + " but " + kConfigFile +
                         " says r = " + std::to_string(expect));
    const nlohmann::json* a = peft.pattern_value(ap, module);
    x.alpha =
        a ? json_float(*a, cfg_path.string() + ": alpha_pattern for '" + module + "'") : ad.alpha;
    // rsLoRA scales by alpha / sqrt(r); ours is alpha / r, so keep alpha * sqrt(r).
    if (peft.rslora) x.alpha *= std::sqrt(float(x.rank));
    try {
      check_lora_alpha(x.alpha, cfg_path.string() + ": alpha of '" + module + "'");
    } catch (const std::invalid_argument& e) {
      throw AdapterError(e.what());
    }
  }
  if (peft.rslora) ad.alpha *= std::sqrt(float(ad.rank));
  if (ad.layers.empty()) throw AdapterError(st_path + ": no adapter tensors");
  ad.target_modules = target_modules_of(ad);
  return ad;
}

// ---------------------------------------------------------------- GGUF

namespace {
constexpr int64_t kMaxGgufBytes = int64_t(4) << 30;  // read whole into memory
constexpr const char* kLegacyPrefix = "lora.";

// lora.rank / lora.alpha + lora.<path>.weight_a/_b: Blocklab's first layout.
bool is_legacy_layout(const GgufFile& f) {
  if (f.find("lora.rank") || f.find("lora.alpha")) return true;
  for (const GgufTensorInfo& t : f.tensors)
    if (t.name.rfind(kLegacyPrefix, 0) == 0) return true;
  return false;
}

std::vector<float> finite_tensor(const GgufFile& f, const GgufTensorInfo& t) {
  std::vector<float> v = f.tensor_data(t);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      f.fail("tensor '" + t.name + "' holds a non-finite value (" + std::to_string(v[i]) +
             ") at element " + std::to_string(i));
  return v;
}

void check_alpha(float alpha, const std::string& what) {
  try {
    check_lora_alpha(alpha, what);
  } catch (const std::invalid_argument& e) {
    throw AdapterError(e.what());
  }
}

Adapter read_legacy_gguf(const GgufFile& f) {
  Adapter ad;
  const GgufValue* rank = f.find("lora.rank");
  const GgufValue* alpha = f.find("lora.alpha");
  if (!rank || !alpha || (rank->type != GgufType::kU32 && rank->type != GgufType::kI32) ||
      alpha->type != GgufType::kF32)
    f.fail("missing lora.rank (u32) / lora.alpha (f32) metadata");
  ad.rank = rank->i64;
  ad.alpha = float(alpha->num);
  if (ad.rank < 1) f.fail("lora.rank " + std::to_string(ad.rank) + " must be at least 1");
  check_alpha(ad.alpha, f.path() + ": lora.alpha");
  std::map<std::string, float> layer_alpha;
  for (auto& [key, v] : f.kv)
    if (key.rfind(kLegacyPrefix, 0) == 0 && ends_with(key, ".alpha") && key != "lora.alpha" &&
        v.type == GgufType::kF32) {
      layer_alpha[key.substr(5, key.size() - 11)] = float(v.num);
      check_alpha(float(v.num), f.path() + ": " + key);
    }
  for (const GgufTensorInfo& t : f.tensors) {
    const bool is_a = ends_with(t.name, ".weight_a");
    if ((!is_a && !ends_with(t.name, ".weight_b")) || t.name.rfind(kLegacyPrefix, 0) != 0 ||
        t.name.size() <= 5 + 9)
      f.fail("tensor '" + t.name + "' is not named lora.<layer>.weight_a / weight_b");
    if (t.ne.size() != 2)
      f.fail("tensor '" + t.name + "' must be 2-D, has " + std::to_string(t.ne.size()) + " dims");
    const std::string p = t.name.substr(5, t.name.size() - 5 - 9);
    AdapterLayer& x = ad.layers[p];
    std::vector<float> v = finite_tensor(f, t);
    if (is_a) {
      x.a = std::move(v);
      x.rank = int64_t(t.ne[1]);
      x.in = int64_t(t.ne[0]);
    } else {
      x.b = std::move(v);
      x.out = int64_t(t.ne[1]);
    }
  }
  for (auto& [p, x] : ad.layers) {
    if (x.a.empty() || x.b.empty())
      f.fail("'lora." + p + (x.a.empty() ? ".weight_a" : ".weight_b") + "' is missing");
    if (int64_t(x.b.size()) != x.out * x.rank)
      f.fail("'lora." + p + ".weight_b' has rank " + std::to_string(int64_t(x.b.size()) / x.out) +
             " but its weight_a has rank " + std::to_string(x.rank));
    x.alpha = layer_alpha.count(p) ? layer_alpha[p] : ad.alpha;
  }
  return ad;
}

// Head counts for undoing the rotary row permutation of q/k lora_b: the
// model's, checked against the file's when both are known.
int64_t heads_for(const GgufFile& f, const ModelConfig* base, const char* key,
                  const std::string& tensor) {
  const GgufValue* v = f.find(key);
  std::optional<int64_t> file;
  if (v) file = f.get_int(key);
  std::optional<int64_t> model;
  if (base)
    model = std::string(key) == "llama.attention.head_count" ? base->block.n_heads
                                                             : base->block.effective_n_kv_heads();
  if (file && model && *file != *model)
    f.fail(std::string(key) + " = " + std::to_string(*file) + " but the model has " +
           std::to_string(*model) + " (an adapter for another base?)");
  if (model) return *model;
  if (file) return *file;
  f.fail("'" + tensor + "' is stored in llama.cpp's rotary row order; undoing it needs " + key +
         ": load the adapter against its base model (e.g. lora export --base CKPT)");
}

Adapter read_llama_gguf(const GgufFile& f, const ModelConfig* base) {
  const std::string type = f.find("general.type") ? f.get_string("general.type") : "";
  const std::string atype = f.find("adapter.type") ? f.get_string("adapter.type") : "";
  if (type != "adapter" || atype != "lora")
    f.fail(
        "neither a llama.cpp LoRA adapter (general.type = 'adapter', adapter.type = 'lora') nor "
        "Blocklab's older layout (lora.rank / lora.alpha)");
  const std::string arch =
      f.find("general.architecture") ? f.get_string("general.architecture") : "";
  if (arch != "llama")
    f.fail("general.architecture is '" + arch +
           "': Blocklab reads llama.cpp adapters for the 'llama' architecture only");
  // llama.cpp: alpha 0 or absent means scale 1, i.e. alpha = rank per layer.
  float alpha = 0;
  if (f.find("adapter.lora.alpha")) alpha = f.get_f32("adapter.lora.alpha");
  if (alpha != 0) check_alpha(alpha, f.path() + ": adapter.lora.alpha");
  Adapter ad;
  for (const GgufTensorInfo& t : f.tensors) {
    const bool is_a = ends_with(t.name, ".lora_a");
    if (!is_a && !ends_with(t.name, ".lora_b"))
      f.fail("tensor '" + t.name + "' is not a <tensor>.lora_a / .lora_b pair member");
    const std::string base_name = t.name.substr(0, t.name.size() - 7);
    const auto internal = internal_from_llama_gguf(base_name);
    if (!internal || !ends_with(*internal, ".weight") || *internal == "embed_tokens.weight" ||
        internal->find("norm") != std::string::npos)
      f.fail("tensor '" + t.name + "' adapts '" + base_name +
             "', which is no Linear layer of a llama model Blocklab can adapt");
    if (t.ne.size() != 2)
      f.fail("tensor '" + t.name + "' must be 2-D, has " + std::to_string(t.ne.size()) + " dims");
    const std::string path = internal->substr(0, internal->size() - 7);
    AdapterLayer& x = ad.layers[path];
    std::vector<float> v = finite_tensor(f, t);
    // GGML order: lora_a ne = [in, r] is a row-major (r, in) matrix, lora_b
    // ne = [r, out] a row-major (out, r) one: PEFT's shapes, unchanged.
    if (is_a) {
      x.a = std::move(v);
      x.in = int64_t(t.ne[0]);
      if (x.rank && x.rank != int64_t(t.ne[1]))
        f.fail("tensor '" + t.name + "' has rank " + std::to_string(t.ne[1]) +
               " but its lora_b has rank " + std::to_string(x.rank));
      x.rank = int64_t(t.ne[1]);
    } else {
      x.b = std::move(v);
      x.out = int64_t(t.ne[1]);
      if (x.rank && x.rank != int64_t(t.ne[0]))
        f.fail("tensor '" + t.name + "' has rank " + std::to_string(t.ne[0]) +
               " but its lora_a has rank " + std::to_string(x.rank));
      x.rank = int64_t(t.ne[0]);
    }
  }
  for (auto& [path, x] : ad.layers) {
    const std::string name = *llama_gguf_tensor_name(path + ".weight");
    if (x.a.empty() || x.b.empty())
      f.fail("'" + name + (x.a.empty() ? ".lora_a" : ".lora_b") + "' is missing");
    x.alpha = alpha != 0 ? alpha : float(x.rank);
    const bool q = ends_with(path, ".q_proj");
    if (q || ends_with(path, ".k_proj")) {
      const int64_t heads =
          heads_for(f, base, q ? "llama.attention.head_count" : "llama.attention.head_count_kv",
                    name + ".lora_b");
      if (heads < 1 || x.out % heads || (x.out / heads) % 2)
        f.fail("'" + name + ".lora_b' has " + std::to_string(x.out) + " rows, not " +
               std::to_string(heads) + " heads of an even size");
      llama_rope_permute_rows(x.b.data(), x.out, x.rank, heads, false);
    }
    if (ad.layers.begin()->first == path) {
      ad.rank = x.rank;
      ad.alpha = x.alpha;
    }
  }
  return ad;
}
}  // namespace

void write_gguf_adapter(const std::string& path, const Adapter& ad, const ModelConfig& base) {
  if (ad.layers.empty()) throw AdapterError(path + ": the model has no LoRA adapters to save");
  const std::string why = llama_cpp_incompatibility(base);
  if (!why.empty())
    throw AdapterError(path + ": llama.cpp cannot load an adapter for this model: " + why +
                       " (save a PEFT directory instead, or Blocklab's own GGUF layout: "
                       "lora export --gguf-layout blocklab)");
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "adapter");
  if (!ad.base_model.empty()) w.add_string("general.base_model.0.name", ad.base_model);
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", ad.alpha);
  // Not read by llama.cpp; lets Blocklab undo the q/k row permutation without the base.
  w.add_u32("llama.attention.head_count", uint32_t(base.block.n_heads));
  w.add_u32("llama.attention.head_count_kv", uint32_t(base.block.effective_n_kv_heads()));
  for (auto& [p, x] : ad.layers) {
    const auto name = llama_gguf_tensor_name(p + ".weight");
    if (!name || name->find("norm") != std::string::npos || *name == "token_embd.weight")
      throw AdapterError(path + ": module '" + p + "' has no llama.cpp tensor to adapt");
    w.add_tensor(*name + ".lora_a", {uint64_t(x.in), uint64_t(x.rank)}, x.a.data());
    // llama.cpp scales every layer by adapter.lora.alpha / rank: a layer whose
    // own alpha differs carries the ratio in B, so the product stays the same.
    std::vector<float> b = x.b;
    if (x.alpha != ad.alpha)
      for (float& v : b) v *= x.alpha / ad.alpha;
    const int64_t heads =
        llama_rope_permute_heads(p, base.block.n_heads, base.block.effective_n_kv_heads());
    if (heads) llama_rope_permute_rows(b.data(), x.out, x.rank, heads, true);
    w.add_tensor(*name + ".lora_b", {uint64_t(x.rank), uint64_t(x.out)}, b.data());
  }
  try {
    w.write(path);
  } catch (const std::runtime_error& e) {
    throw AdapterError(e.what());
  }
}

void write_gguf_adapter_legacy(const std::string& path, const Adapter& ad) {
  if (ad.layers.empty()) throw AdapterError(path + ": the model has no LoRA adapters to save");
  GgufWriter w;
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", ad.alpha);
  w.add_u32("lora.rank", uint32_t(ad.rank));
  w.add_f32("lora.alpha", ad.alpha);
  // Per-layer alpha where it differs from the usual one: "lora.<module>.alpha".
  for (auto& [p, x] : ad.layers)
    if (x.alpha != ad.alpha) w.add_f32("lora." + p + ".alpha", x.alpha);
  for (auto& [p, x] : ad.layers) {
    w.add_tensor("lora." + p + ".weight_a", {uint64_t(x.in), uint64_t(x.rank)}, x.a.data());
    w.add_tensor("lora." + p + ".weight_b", {uint64_t(x.rank), uint64_t(x.out)}, x.b.data());
  }
  try {
    w.write(path);
  } catch (const std::runtime_error& e) {
    throw AdapterError(e.what());
  }
}

Adapter read_gguf_adapter(const std::string& path, const ModelConfig* base) {
  try {
    const GgufFile f = GgufFile::read(path, kMaxGgufBytes);
    Adapter ad = is_legacy_layout(f) ? read_legacy_gguf(f) : read_llama_gguf(f, base);
    if (ad.layers.empty()) f.fail("no adapter tensors");
    ad.target_modules = target_modules_of(ad);
    return ad;
  } catch (const GgufError& e) {
    throw AdapterError(e.what());
  }
}

bool is_blocklab_layout_gguf(const std::string& path) {
  try {
    return is_legacy_layout(GgufFile::read(path, kMaxGgufBytes));
  } catch (const GgufError&) {
    return false;
  }
}

// ---------------------------------------------------------------- by path

void save_adapter(const std::string& path, Module& model, const std::string& base_model,
                  GgufLayout layout) {
  Adapter ad = extract_adapter(model);
  ad.base_model = base_model;
  if (!ends_with(path, ".gguf")) {
    write_peft_adapter(path, ad);
  } else if (layout == GgufLayout::kBlocklab) {
    write_gguf_adapter_legacy(path, ad);
  } else {
    const auto* lm = dynamic_cast<const LanguageModel*>(&model);
    if (!lm) throw AdapterError(path + ": a llama.cpp GGUF adapter needs the base LanguageModel");
    write_gguf_adapter(path, ad, lm->config());
  }
}

Adapter read_adapter(const std::string& path, const ModelConfig* base) {
  return ends_with(path, ".gguf") ? read_gguf_adapter(path, base) : read_peft_adapter(path);
}

void load_adapter(const std::string& path, Module& model) {
  const auto* lm = dynamic_cast<const LanguageModel*>(&model);
  attach_adapter(model, read_adapter(path, lm ? &lm->config() : nullptr));
}

}  // namespace bl
