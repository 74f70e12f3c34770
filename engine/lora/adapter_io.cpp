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
#include "io/bounded_read.h"
#include "io/file_manifest.h"
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
constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kGgufAlignment = 32;
constexpr uint64_t kMaxGgufAlignment = 1 << 16;
constexpr int64_t kMaxGgufBytes = int64_t(4) << 30;  // read whole into memory
enum GgufType : uint32_t {
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10
};

struct Writer {
  std::vector<uint8_t> buf;
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf.insert(buf.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    buf.insert(buf.end(), s.begin(), s.end());
  }
  void pad() {
    while (buf.size() % kGgufAlignment) buf.push_back(0);
  }
};

struct Reader {
  const std::vector<uint8_t>& buf;
  std::string file;
  size_t pos = 0;
  [[noreturn]] void fail(const std::string& what) const {
    throw AdapterError(file + ": " + what + " (at byte " + std::to_string(pos) + ")");
  }
  template <class T>
  T get() {
    if (buf.size() - pos < sizeof(T)) fail("truncated");
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    if (n > buf.size() - pos) fail("string longer than the file");
    std::string s(reinterpret_cast<const char*>(buf.data() + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
  void skip_value(uint32_t type, int depth = 0) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == kString) {
      str();
    } else if (type == kArray) {
      if (depth > 2) fail("nested arrays too deep");
      const uint32_t t = get<uint32_t>();
      const uint64_t n = get<uint64_t>();
      if (n > buf.size()) fail("array longer than the file");
      for (uint64_t i = 0; i < n; ++i) skip_value(t, depth + 1);
    } else if (type < 13) {
      if (buf.size() - pos < sizes[type]) fail("truncated");
      pos += sizes[type];
    } else {
      fail("unknown metadata type " + std::to_string(type));
    }
  }
};
}  // namespace

void write_gguf_adapter(const std::string& path, const Adapter& ad) {
  if (ad.layers.empty()) throw AdapterError(path + ": the model has no LoRA adapters to save");
  struct T {
    std::string name;
    int64_t rows, cols;
    const std::vector<float>* data;
  };
  std::vector<T> ts;
  for (auto& [p, x] : ad.layers) {
    ts.push_back({"lora." + p + ".weight_a", x.rank, x.in, &x.a});
    ts.push_back({"lora." + p + ".weight_b", x.out, x.rank, &x.b});
  }
  Writer w;
  w.put<uint32_t>(kGgufMagic);
  w.put<uint32_t>(3);
  w.put<uint64_t>(ts.size());
  // Per-layer alpha where it differs from the usual one: "lora.<module>.alpha".
  std::vector<std::pair<std::string, float>> alphas;
  for (auto& [p, x] : ad.layers)
    if (x.alpha != ad.alpha) alphas.emplace_back("lora." + p + ".alpha", x.alpha);
  w.put<uint64_t>(6 + alphas.size());
  w.str("general.type"), w.put<uint32_t>(kString), w.str("adapter");
  w.str("general.alignment"), w.put<uint32_t>(kU32), w.put<uint32_t>(uint32_t(kGgufAlignment));
  w.str("adapter.type"), w.put<uint32_t>(kString), w.str("lora");
  w.str("adapter.lora.alpha"), w.put<uint32_t>(kF32), w.put<float>(ad.alpha);
  w.str("lora.rank"), w.put<uint32_t>(kU32), w.put<uint32_t>(uint32_t(ad.rank));
  w.str("lora.alpha"), w.put<uint32_t>(kF32), w.put<float>(ad.alpha);
  for (auto& [k, v] : alphas) w.str(k), w.put<uint32_t>(kF32), w.put<float>(v);
  uint64_t offset = 0;
  for (const T& t : ts) {
    w.str(t.name);
    w.put<uint32_t>(2);
    w.put<uint64_t>(uint64_t(t.cols));  // innermost first
    w.put<uint64_t>(uint64_t(t.rows));
    w.put<uint32_t>(0);  // GGML_TYPE_F32
    w.put<uint64_t>(offset);
    offset +=
        (uint64_t(t.rows * t.cols) * 4 + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
  }
  w.pad();
  for (const T& t : ts) {
    const auto* p = reinterpret_cast<const uint8_t*>(t.data->data());
    w.buf.insert(w.buf.end(), p, p + t.data->size() * 4);
    w.pad();
  }
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    f.write(reinterpret_cast<const char*>(w.buf.data()), std::streamsize(w.buf.size()));
    if (!f) throw AdapterError(path + ": cannot write");
  }
  fs::rename(tmp, path);
}

Adapter read_gguf_adapter(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_regular_file(path, kMaxGgufBytes);
  } catch (const std::runtime_error& e) {
    throw AdapterError(std::string("cannot read ") + e.what());
  }
  const std::vector<uint8_t> buf(bytes.begin(), bytes.end());
  bytes.clear();
  Reader r{buf, path};
  if (r.get<uint32_t>() != kGgufMagic) r.fail("not a GGUF file (bad magic)");
  const uint32_t version = r.get<uint32_t>();
  if (version != 2 && version != 3) r.fail("unsupported GGUF version " + std::to_string(version));
  const uint64_t n_tensors = r.get<uint64_t>(), n_kv = r.get<uint64_t>();
  if (n_tensors > buf.size() / 8 || n_kv > buf.size() / 8) r.fail("counts exceed the file size");
  Adapter ad;
  bool has_rank = false, has_alpha = false, has_alignment = false;
  uint64_t alignment = kGgufAlignment;
  std::map<std::string, float> layer_alpha;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = r.str();
    const uint32_t type = r.get<uint32_t>();
    if (key == "lora.rank" && (type == kU32 || type == kI32)) {
      ad.rank = type == kU32 ? int64_t(r.get<uint32_t>()) : int64_t(r.get<int32_t>());
      has_rank = true;
    } else if (key == "lora.alpha" && type == kF32) {
      ad.alpha = r.get<float>();
      has_alpha = true;
    } else if (key == "general.alignment") {
      // Every tensor offset and the data section's start depend on it: a wrong
      // or edited value would read tensors from the wrong bytes.
      if (type != kU32) r.fail("general.alignment must be a u32 (GGUF type 4)");
      if (has_alignment) r.fail("general.alignment given twice");
      alignment = r.get<uint32_t>();
      has_alignment = true;
      if (alignment < 8 || alignment > kMaxGgufAlignment || (alignment & (alignment - 1)))
        r.fail("general.alignment " + std::to_string(alignment) + " is not a power of two in [8, " +
               std::to_string(kMaxGgufAlignment) + "]");
    } else if (key.rfind("lora.", 0) == 0 && ends_with(key, ".alpha") && type == kF32) {
      layer_alpha[key.substr(5, key.size() - 11)] = r.get<float>();
    } else {
      r.skip_value(type);
    }
  }
  if (!has_rank || !has_alpha) r.fail("missing lora.rank / lora.alpha metadata");
  if (ad.rank < 1) r.fail("lora.rank " + std::to_string(ad.rank) + " must be at least 1");
  try {
    check_lora_alpha(ad.alpha, path + ": lora.alpha");
    for (auto& [p, a] : layer_alpha) check_lora_alpha(a, path + ": lora." + p + ".alpha");
  } catch (const std::invalid_argument& e) {
    throw AdapterError(e.what());
  }
  struct Info {
    std::string name;
    int64_t rows, cols;
    uint64_t offset, bytes;
  };
  std::vector<Info> infos;
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info t;
    t.name = r.str();
    if (!names.insert(t.name).second) r.fail("tensor '" + t.name + "' appears twice");
    const uint32_t nd = r.get<uint32_t>();
    if (nd != 2) r.fail("tensor '" + t.name + "' must be 2-D, has " + std::to_string(nd) + " dims");
    const uint64_t c = r.get<uint64_t>(), rr = r.get<uint64_t>();
    if (c == 0 || rr == 0 || c > buf.size() || rr > buf.size() || c * rr > buf.size())
      r.fail("tensor '" + t.name + "' has impossible dims");
    t.cols = int64_t(c);
    t.rows = int64_t(rr);
    t.bytes = c * rr * 4;
    if (r.get<uint32_t>() != 0) r.fail("tensor '" + t.name + "' is not F32");
    t.offset = r.get<uint64_t>();
    if (t.offset % alignment)
      r.fail("tensor '" + t.name + "' offset " + std::to_string(t.offset) +
             " is not a multiple of general.alignment " + std::to_string(alignment));
    infos.push_back(t);
  }
  const uint64_t data_start = (r.pos + alignment - 1) / alignment * alignment;
  const auto padded = [&](uint64_t n) { return (n + alignment - 1) / alignment * alignment; };
  // As in the safetensors reader: tensors tile the data section in offset
  // order, each at the next aligned offset, with no overlap, gap or stray tail.
  std::vector<const Info*> order;
  for (const Info& t : infos) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const Info* a, const Info* b) { return a->offset < b->offset; });
  uint64_t end = 0;
  const Info* prev = nullptr;
  for (const Info* t : order) {
    if (t->offset < end) r.fail("tensor '" + t->name + "' overlaps tensor '" + prev->name + "'");
    if (t->offset != padded(end))
      r.fail("gap of " + std::to_string(t->offset - end) + " bytes before tensor '" + t->name +
             "'");
    if (t->offset > buf.size() || t->bytes > buf.size() ||
        data_start + t->offset + t->bytes > buf.size())
      r.fail("tensor '" + t->name + "' lies outside the file");
    end = t->offset + t->bytes;
    prev = t;
  }
  if (buf.size() < data_start + end || buf.size() > data_start + padded(end))
    r.fail("the data section holds " + std::to_string(int64_t(buf.size()) - int64_t(data_start)) +
           " bytes but its tensors take " + std::to_string(end) +
           " (general.alignment changed or the file truncated?)");
  for (const Info& t : infos) {
    const bool is_a = ends_with(t.name, ".weight_a");
    if ((!is_a && !ends_with(t.name, ".weight_b")) || t.name.rfind("lora.", 0) != 0 ||
        t.name.size() <= 5 + 9)
      r.fail("tensor '" + t.name + "' is not named lora.<layer>.weight_a / weight_b");
    const std::string p = t.name.substr(5, t.name.size() - 5 - 9);
    AdapterLayer& x = ad.layers[p];
    std::vector<float> v(size_t(t.rows * t.cols));
    std::memcpy(v.data(), buf.data() + data_start + t.offset, v.size() * 4);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        r.fail("tensor '" + t.name + "' holds a non-finite value (" + std::to_string(v[i]) +
               ") at element " + std::to_string(i));
    if (is_a) {
      x.a = std::move(v);
      x.rank = t.rows;
      x.in = t.cols;
    } else {
      x.b = std::move(v);
      x.out = t.rows;
    }
  }
  for (auto& [p, x] : ad.layers) {
    if (x.a.empty() || x.b.empty())
      r.fail("'lora." + p + (x.a.empty() ? ".weight_a" : ".weight_b") + "' is missing");
    if (int64_t(x.b.size()) != x.out * x.rank)
      r.fail("'lora." + p + ".weight_b' has rank " + std::to_string(int64_t(x.b.size()) / x.out) +
             " but its weight_a has rank " + std::to_string(x.rank));
    x.alpha = layer_alpha.count(p) ? layer_alpha[p] : ad.alpha;
  }
  if (ad.layers.empty()) r.fail("no adapter tensors");
  ad.target_modules = target_modules_of(ad);
  return ad;
}

// ---------------------------------------------------------------- by path

void save_adapter(const std::string& path, Module& model, const std::string& base_model) {
  Adapter ad = extract_adapter(model);
  ad.base_model = base_model;
  if (ends_with(path, ".gguf"))
    write_gguf_adapter(path, ad);
  else
    write_peft_adapter(path, ad);
}

Adapter read_adapter(const std::string& path) {
  return ends_with(path, ".gguf") ? read_gguf_adapter(path) : read_peft_adapter(path);
}

void load_adapter(const std::string& path, Module& model) {
  attach_adapter(model, read_adapter(path));
}

}  // namespace bl
