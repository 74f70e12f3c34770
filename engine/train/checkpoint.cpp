#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>

#include "core/linear.h"
#include "io/bounded_read.h"
#include "io/file_manifest.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "io/synced_file.h"
#include "quant/quantize.h"
#include "train/trainer.h"

#ifndef BLOCKLAB_VERSION
#define BLOCKLAB_VERSION "unknown"
#endif

namespace bl {

namespace fs = std::filesystem;

// ------------------------------------------------------------------ naming

namespace {

// Block sub-modules whose Hugging Face Llama names differ from ours.
constexpr std::pair<const char*, const char*> kLayerModules[] = {
    {"attn_norm", "input_layernorm"},
    {"attention", "self_attn"},
    {"ffn_norm", "post_attention_layernorm"},
    {"ffn", "mlp"},
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Splits "layers.<N>.<module>.<rest>" into (N, module, rest); false if not of that form.
bool split_layer(const std::string& s, std::string& index, std::string& module, std::string& rest) {
  if (!starts_with(s, "layers.")) return false;
  const size_t a = 7, b = s.find('.', a);
  if (b == std::string::npos || b == a) return false;
  for (size_t i = a; i < b; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  const size_t c = s.find('.', b + 1);
  if (c == std::string::npos) return false;
  index = s.substr(a, b - a);
  module = s.substr(b + 1, c - b - 1);
  rest = s.substr(c + 1);
  return true;
}

}  // namespace

std::string checkpoint_tensor_name(const std::string& n) {
  if (starts_with(n, "lm_head.")) return n;
  if (starts_with(n, "position.")) return "model.embed_positions." + n.substr(9);
  std::string index, module, rest;
  if (split_layer(n, index, module, rest)) {
    for (auto [ours, hf] : kLayerModules)
      if (module == ours) module = hf;
    return "model.layers." + index + "." + module + "." + rest;
  }
  return "model." + n;  // embed_tokens.weight, norm.weight, norm.bias, ...
}

std::optional<std::string> internal_tensor_name(const std::string& c) {
  if (starts_with(c, "lm_head.")) return c;
  if (!starts_with(c, "model.")) return std::nullopt;
  const std::string r = c.substr(6);
  if (starts_with(r, "embed_positions.")) return "position." + r.substr(16);
  if (starts_with(r, "position.") || starts_with(r, "lm_head.")) return std::nullopt;
  std::string index, module, rest;
  if (split_layer(r, index, module, rest)) {
    for (auto [ours, hf] : kLayerModules) {
      if (module == ours) return std::nullopt;  // we always write the HF name
      if (module == hf) module = ours;
    }
    return "layers." + index + "." + module + "." + rest;
  }
  return r;
}

// ------------------------------------------------------------------ save

namespace {

// model.safetensors metadata marking a fine-tune checkpoint's trainable-only weights.
constexpr const char* kWeightsKey = "weights";
constexpr const char* kTrainableWeights = "trainable";
// model.safetensors metadata of a quantized model: its QuantSpec.
constexpr const char* kQuantizationKey = "quantization";

std::vector<TensorView> weight_views(LanguageModel& model, bool trainable_only) {
  std::vector<TensorView> v;
  for (auto& [name, p] : model.named_parameters()) {
    if (trainable_only && !p->trainable()) continue;
    bool dup = false;
    for (auto& t : v) dup |= t.data == p->data();
    if (dup) continue;  // tied weights are stored once
    TensorView t;
    t.name = checkpoint_tensor_name(name);
    for (int i = 0; i < p->shape().rank; ++i) t.shape.push_back(p->shape()[i]);
    t.data = p->data();
    v.push_back(std::move(t));
  }
  return v;
}

// A quantized model's frozen matrices (quant/quantize.h), by internal
// parameter name: Linear "<path>.weight", "embed_tokens.weight", "lm_head.weight".
std::vector<std::pair<std::string, const QuantizedMatrix*>> quantized_matrices(
    LanguageModel& model) {
  std::vector<std::pair<std::string, const QuantizedMatrix*>> v;
  if (model.quantized_embedding())
    v.emplace_back("embed_tokens.weight", model.quantized_embedding());
  if (model.quantized_lm_head()) v.emplace_back("lm_head.weight", model.quantized_lm_head());
  model.visit_named([&](const std::string& path, Module& m) {
    if (auto* l = dynamic_cast<Linear*>(&m); l && l->quantized())
      v.emplace_back(path + ".weight", l->quantized_weight());
  });
  return v;
}

// Stored as three tensors beside the float ones: "<name>.qcodes" (U8, packed
// codes, (rows, row_bytes)), "<name>.qscales" and, for affine, "<name>.qbiases"
// (F32, (rows, groups)); <name> is the checkpoint name of the weight.
void add_quantized_views(const std::string& name, const QuantizedMatrix& q,
                         std::vector<TensorView>& v) {
  const std::string n = checkpoint_tensor_name(name);
  TensorView codes;
  codes.name = n + ".qcodes";
  codes.shape = {q.rows(), q.row_bytes()};
  codes.u8 = q.packed().data();
  v.push_back(codes);
  v.push_back({n + ".qscales", {q.rows(), q.groups_per_row()}, q.scales().data()});
  if (!q.biases().empty())
    v.push_back({n + ".qbiases", {q.rows(), q.groups_per_row()}, q.biases().data()});
}

nlohmann::json rng_json(const std::array<uint64_t, 4>& s) {
  // As strings: JSON readers may lose precision on 64-bit integers.
  nlohmann::json a = nlohmann::json::array();
  for (uint64_t x : s) a.push_back(std::to_string(x));
  return a;
}

std::array<uint64_t, 4> rng_from_json(const nlohmann::json& a, const std::string& file,
                                      const char* what) {
  std::array<uint64_t, 4> s{};
  try {
    if (!a.is_array() || a.size() != 4) throw std::invalid_argument("not 4 values");
    for (size_t i = 0; i < 4; ++i) {
      const std::string v = a.at(i).get<std::string>();
      size_t used = 0;
      s[i] = std::stoull(v, &used);
      if (used != v.size()) throw std::invalid_argument("not a number");
    }
  } catch (const std::exception&) {
    throw CheckpointError(file + ": corrupt " + what + " state (expected 4 decimal strings)");
  }
  return s;
}

void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort
  ::fsync(fd);
  ::close(fd);
}

// Runs f, turning any exception into CheckpointError with `context` in front.
template <class F>
void as_checkpoint_error(const std::string& context, F&& f) {
  try {
    f();
  } catch (const CheckpointError&) {
    throw;
  } catch (const FormatError& e) {
    throw CheckpointError(e.what());  // already "<file>: <problem>"
  } catch (const std::exception& e) {
    throw CheckpointError(context + ": " + e.what());
  }
}

// Optimizer buffers are named "<param>.<slot>"; on disk the parameter part uses
// the checkpoint naming too. Replaces the longest matching `from` prefix.
std::string rename_state(const std::string& n,
                         const std::vector<std::pair<std::string, std::string>>& from_to) {
  const std::pair<std::string, std::string>* best = nullptr;
  for (const auto& ft : from_to)
    if (n.size() > ft.first.size() && n[ft.first.size()] == '.' && starts_with(n, ft.first) &&
        (!best || ft.first.size() > best->first.size()))
      best = &ft;
  return best ? best->second + n.substr(best->first.size()) : n;
}

std::vector<std::pair<std::string, std::string>> state_names(const Optimizer& opt, bool to_file) {
  std::vector<std::pair<std::string, std::string>> v;
  for (const Parameter* p : opt.params()) {
    const std::string file = checkpoint_tensor_name(p->name());
    v.emplace_back(to_file ? p->name() : file, to_file ? file : p->name());
  }
  return v;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

}  // namespace

void save_checkpoint(const std::string& dir, LanguageModel& model, const TrainConfig& train,
                     const Tokenizer& tok, Trainer* trainer, const nlohmann::json& finetune) {
  const fs::path final_dir = fs::path(dir).lexically_normal();
  if (final_dir.filename().empty()) throw CheckpointError("bad checkpoint directory '" + dir + "'");
  fs::path tmp = final_dir;
  tmp += ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec)
    throw CheckpointError("cannot create checkpoint directory " + tmp.string() + ": " +
                          ec.message());
  const int64_t step = trainer ? trainer->step() : 0;
  try {
    const bool ft = !finetune.is_null();
    std::map<std::string, std::string> meta = {{"format", "pt"},
                                               {"blocklab_format", "blocklab-checkpoint"},
                                               {"naming", "hf-llama"},
                                               {"step", std::to_string(step)}};
    if (ft) meta[kWeightsKey] = kTrainableWeights;
    std::vector<TensorView> views = weight_views(model, ft);
    // A fine-tune checkpoint leaves the (quantized) base in its own checkpoint.
    const auto quantized = ft ? decltype(quantized_matrices(model))() : quantized_matrices(model);
    nlohmann::json quant;
    if (!quantized.empty()) {
      const QuantSpec spec = quantized[0].second->spec();
      quant = {{"spec", spec.str()}, {"tensors", nlohmann::json::array()}};
      for (auto& [name, q] : quantized) {
        if (q->spec().str() != spec.str())
          throw CheckpointError(dir + ": '" + name + "' is quantized as " + q->spec().str() +
                                ", other tensors as " + spec.str() + " (one spec per checkpoint)");
        add_quantized_views(name, *q, views);
        quant["tensors"].push_back(name);
      }
      meta[kQuantizationKey] = spec.str();
    }
    as_checkpoint_error((tmp / "model.safetensors").string(), [&] {
      write_safetensors((tmp / "model.safetensors").string(), views, meta);
    });
    nlohmann::json info = {{"format", "blocklab-checkpoint"},
                           {"version", kCheckpointVersion},
                           {"program_version", BLOCKLAB_VERSION},
                           {"model", model_config_to_json(model.config())},
                           {"train", train_config_to_json(train)},
                           {"tokenizer", tok.to_json()},
                           {"step", step}};
    if (ft) info["finetune"] = finetune;
    if (!quant.is_null()) info["quantization"] = quant;
    if (trainer) {
      NamedBuffers state = trainer->optimizer().state();
      const auto names = state_names(trainer->optimizer(), true);
      std::vector<TensorView> views;
      for (auto& [name, buf] : state)
        views.push_back({rename_state(name, names), {int64_t(buf.size())}, buf.data()});
      as_checkpoint_error((tmp / "optimizer.safetensors").string(), [&] {
        write_safetensors((tmp / "optimizer.safetensors").string(), views,
                          {{"optimizer", trainer->optimizer().name()}});
      });
      BatchSampler::State s = trainer->sampler().state();
      info["trainer"] = {{"optimizer", trainer->optimizer().name()},
                         {"optimizer_steps", trainer->optimizer().steps_taken()},
                         {"sampler_rng", rng_json(s.rng)},
                         {"sampler_batches", s.batches_drawn},
                         {"tokens_seen", step * trainer->tokens_per_step()},
                         {"dropout_rng", rng_json(model.dropout_rng().state())}};
    }
    try {
      write_file_synced(tmp / "checkpoint.json", info.dump(2) + "\n");
    } catch (const std::runtime_error& e) {
      throw CheckpointError(e.what());
    }
    // Last: the SHA-256 of every file above, verified before a resume.
    as_checkpoint_error((tmp / kManifestFile).string(), [&] { write_manifest(tmp.string()); });
    sync_dir(tmp);
  } catch (...) {
    fs::remove_all(tmp, ec);  // never leave a partial directory behind (e.g. disk full)
    throw;
  }
  fs::path old = final_dir;
  old += ".old";
  fs::remove_all(old, ec);
  if (fs::exists(final_dir)) {
    fs::rename(final_dir, old, ec);
    if (ec)
      throw CheckpointError("cannot replace checkpoint " + final_dir.string() + ": " +
                            ec.message());
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    std::error_code ignored;
    if (fs::exists(old)) fs::rename(old, final_dir, ignored);  // put the previous one back
    throw CheckpointError("cannot move checkpoint into " + final_dir.string() + ": " +
                          ec.message());
  }
  sync_dir(final_dir.has_parent_path() ? final_dir.parent_path() : fs::path("."));
  fs::remove_all(old, ec);
}

// ------------------------------------------------------------------ load

CheckpointInfo read_checkpoint_info(const std::string& dir) {
  const fs::path path = fs::path(dir) / "checkpoint.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw CheckpointError("no checkpoint at " + dir + " (not a directory)");
  std::string text;
  try {
    text = read_regular_file(path.string(), int64_t(16) << 20);
    check_json_depth(text, path.string());
  } catch (const std::runtime_error& e) {
    throw CheckpointError("no readable checkpoint at " + dir + ": " + e.what());
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path.string() +
                          ": corrupt checkpoint metadata (not valid JSON): " + e.what());
  }
  CheckpointInfo c;
  as_checkpoint_error(path.string(), [&] {
    if (!j.is_object() || j.value("format", "") != "blocklab-checkpoint")
      throw std::invalid_argument(
          "not a Blocklab checkpoint (\"format\" is not \"blocklab-checkpoint\")");
    c.version = j.value("version", 1);
    if (c.version > kCheckpointVersion)
      throw std::invalid_argument("checkpoint version " + std::to_string(c.version) +
                                  " is newer than this build supports (" +
                                  std::to_string(kCheckpointVersion) + ")");
    for (const char* key : {"model", "train", "tokenizer", "step"})
      if (!j.contains(key)) throw std::invalid_argument(std::string("missing \"") + key + "\"");
    nlohmann::json model = j.at("model");
    upgrade_legacy_model_json(model);
    c.model = model_config_from_json(model);
    c.train = train_config_from_json(j.at("train"));
    c.tokenizer = j.at("tokenizer");
    c.step = j.at("step").get<int64_t>();
    if (c.step < 0) throw std::invalid_argument("negative step");
    if (j.contains("trainer")) c.trainer_state = j["trainer"];
    if (j.contains("finetune")) {
      if (!j["finetune"].is_object()) throw std::invalid_argument("\"finetune\" is not an object");
      c.finetune = j["finetune"];
    }
    if (j.contains("quantization")) {
      const nlohmann::json& q = j["quantization"];
      if (!q.is_object() || !q.contains("spec") || !q.contains("tensors") ||
          !q["tensors"].is_array())
        throw std::invalid_argument("\"quantization\" needs \"spec\" and a \"tensors\" list");
      QuantSpec::parse(q["spec"].get<std::string>());  // names the accepted forms
      for (const auto& t : q["tensors"]) (void)t.get<std::string>();
      c.quantization = q;
    }
  });
  return c;
}

namespace {

// Checks and builds the quantized matrices a checkpoint lists (checkpoint.json
// "quantization"), without touching the model; marks their tensors used.
void plan_quantized(const std::string& path, const nlohmann::json& quant,
                    const SafetensorsFile& file, LanguageModel& model,
                    std::map<std::string, QuantizedMatrix>& qplan, std::set<std::string>& used) {
  if (model.quantized_embedding() || model.quantized_elements() > 0)
    throw CheckpointError(path + ": a quantized checkpoint loads into an unquantized model");
  const QuantSpec spec = QuantSpec::parse(quant["spec"].get<std::string>());
  std::map<std::string, Linear*> linears;
  model.visit_named([&](const std::string& p, Module& m) {
    if (auto* l = dynamic_cast<Linear*>(&m)) {
      if (l->quantized())
        throw CheckpointError(path + ": a quantized checkpoint loads into an unquantized model");
      linears[p + ".weight"] = l;
    }
  });
  const int64_t V = model.config().vocab_size, D = model.config().block.d_model;
  bool head = false, embed = false;
  for (const auto& t : quant["tensors"]) {
    const std::string name = t.get<std::string>();
    int64_t rows = 0, cols = 0;
    if (name == "embed_tokens.weight" || name == "lm_head.weight") {
      if (name == "lm_head.weight" && model.config().tie_embeddings)
        throw CheckpointError(path + ": 'lm_head.weight' is listed but the model ties it");
      (name == "lm_head.weight" ? head : embed) = true;
      rows = V, cols = D;
    } else if (auto it = linears.find(name); it != linears.end()) {
      rows = it->second->out_features(), cols = it->second->in_features();
    } else {
      throw CheckpointError(path + ": quantized tensor '" + name +
                            "' is no Linear weight or embedding of this model");
    }
    if (qplan.count(name)) throw CheckpointError(path + ": '" + name + "' is listed twice");
    const std::string n = checkpoint_tensor_name(name);
    const auto part = [&](const std::string& suffix, bool u8) -> const LoadedTensor* {
      auto it = file.tensors.find(n + suffix);
      if (it == file.tensors.end()) return nullptr;
      if ((it->second.dtype == "U8") != u8)
        throw CheckpointError(path + ": tensor '" + n + suffix + "' must be " +
                              (u8 ? "U8" : "F32") + ", is " + it->second.dtype);
      used.insert(n + suffix);
      return &it->second;
    };
    const LoadedTensor* codes = part(".qcodes", true);
    const LoadedTensor* scales = part(".qscales", false);
    const LoadedTensor* biases = part(".qbiases", false);
    if (!codes || !scales || (spec.mode == QuantMode::kAffine) != bool(biases))
      throw CheckpointError(path + ": quantized tensor '" + n + "' needs .qcodes, .qscales" +
                            (spec.mode == QuantMode::kAffine ? " and .qbiases" : " (no .qbiases)"));
    try {
      std::vector<uint8_t> packed(codes->data.begin(), codes->data.end());  // exact: 0..255
      qplan.emplace(name,
                    QuantizedMatrix::from_parts(spec, rows, cols, std::move(packed), scales->data,
                                                biases ? biases->data : std::vector<float>()));
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(path + ": quantized tensor '" + n + "': " + e.what());
    }
  }
  if (head != (embed && !model.config().tie_embeddings))
    throw CheckpointError(path + ": the embedding and an untied LM head are quantized together");
}

// Copies the tensors of dir/model.safetensors into the model's parameters (all,
// or only the trainable ones), after checking that they fit exactly.
void load_weights(const std::string& dir, LanguageModel& model, bool trainable_only) {
  const std::string path = (fs::path(dir) / "model.safetensors").string();
  // A quantized model's checkpoint: its frozen matrices are rebuilt as stored.
  nlohmann::json quant;
  if (!trainable_only && fs::exists(fs::path(dir) / "checkpoint.json"))
    quant = read_checkpoint_info(dir).quantization;
  SafetensorsFile file;
  as_checkpoint_error(path, [&] {
    file = read_safetensors(path, !quant.is_null());
    require_finite(file, path);
  });
  const auto weights = file.metadata.find(kWeightsKey);
  const bool file_trainable =
      weights != file.metadata.end() && weights->second == kTrainableWeights;
  if (file_trainable && !trainable_only) {
    std::string base;
    try {
      const CheckpointInfo info = read_checkpoint_info(dir);
      base = info.finetune.value("base_checkpoint", "");
    } catch (const std::exception&) {
      // The base is only named to help; the error below stands without it.
    }
    throw CheckpointError(
        path + ": a fine-tune checkpoint (only the trainable LoRA adapter weights" +
        (base.empty() ? std::string() : "; the frozen base model is in " + base) +
        "), not a whole model: load it as a fine-tune of its base, or merge its adapter into "
        "the base first");
  }
  if (!file_trainable && trainable_only)
    throw CheckpointError(path +
                          ": not a fine-tune checkpoint (it holds a whole model, not only the "
                          "trainable weights of a fine-tune)");
  const std::string why =
      trainable_only ? "a different model or LoRA spec" : "a different model config";
  // Validate everything first, so a checkpoint that does not fit changes nothing.
  std::vector<std::pair<const LoadedTensor*, Parameter*>> plan;
  std::set<std::string> used;
  std::map<std::string, QuantizedMatrix> qplan;  // internal weight name -> matrix
  if (!quant.is_null()) plan_quantized(path, quant, file, model, qplan, used);
  for (auto& [name, p] : model.named_parameters()) {
    if (trainable_only && !p->trainable()) continue;
    if (qplan.count(name)) continue;  // stored quantized
    bool dup = false;
    for (auto& [t, q] : plan) dup |= q->data() == p->data();
    if (dup) continue;
    std::string key = checkpoint_tensor_name(name);
    auto it = file.tensors.find(key);
    if (it == file.tensors.end()) it = file.tensors.find(key = name);  // version 1 names
    if (it == file.tensors.end())
      throw CheckpointError(path + ": tensor '" + checkpoint_tensor_name(name) +
                            "' is missing (the checkpoint does not fit this model: parameter '" +
                            name + "' of shape " + p->shape().str() + ")");
    const LoadedTensor& t = it->second;
    if (t.dtype == "U8")
      throw CheckpointError(path + ": tensor '" + key + "' is U8 (quantized codes), not a weight");
    bool same = int(t.shape.size()) == p->shape().rank;
    for (int i = 0; same && i < p->shape().rank; ++i) same = t.shape[size_t(i)] == p->shape()[i];
    if (!same)
      throw CheckpointError(path + ": tensor '" + key + "' has shape " + shape_str(t.shape) +
                            " but the model expects " + p->shape().str() +
                            " (the checkpoint was saved for " + why + ")");
    plan.emplace_back(&t, p);
    used.insert(key);
  }
  for (auto& [name, t] : file.tensors)
    if (!used.count(name))
      throw CheckpointError(path + ": unexpected tensor '" + name + "' of shape " +
                            shape_str(t.shape) + " (the checkpoint was saved for " + why + ")");
  for (auto& [t, p] : plan) std::copy(t->data.begin(), t->data.end(), p->data());
  if (qplan.empty()) return;
  std::map<std::string, Linear*> linears;
  model.visit_named([&](const std::string& p, Module& m) {
    if (auto* l = dynamic_cast<Linear*>(&m)) linears[p + ".weight"] = l;
  });
  std::unique_ptr<QuantizedMatrix> head;
  if (auto it = qplan.find("lm_head.weight"); it != qplan.end())
    head = std::make_unique<QuantizedMatrix>(std::move(it->second));
  for (auto& [name, q] : qplan)
    if (name == "embed_tokens.weight")
      model.quantize_embeddings_from(std::move(q), std::move(head));
    else if (name != "lm_head.weight")
      linears.at(name)->quantize_from(std::move(q));
  rename_parameters(model);
}

}  // namespace

void load_model_weights(const std::string& dir, LanguageModel& model) {
  load_weights(dir, model, false);
}

void load_trainable_weights(const std::string& dir, LanguageModel& model) {
  load_weights(dir, model, true);
}

void load_trainer_state(const std::string& dir, Trainer& trainer) {
  CheckpointInfo info = read_checkpoint_info(dir);
  const std::string json_path = (fs::path(dir) / "checkpoint.json").string();
  if (info.trainer_state.is_null())
    throw CheckpointError(json_path +
                          ": checkpoint has no trainer state (it was saved for inference only)");
  const std::string path = (fs::path(dir) / "optimizer.safetensors").string();
  const nlohmann::json& ts = info.trainer_state;
  int64_t optimizer_steps = 0;
  BatchSampler::State s;
  std::array<uint64_t, 4> dropout{};
  as_checkpoint_error(json_path, [&] {
    const std::string opt = ts.at("optimizer").get<std::string>();
    if (opt != trainer.optimizer().name())
      throw std::invalid_argument("checkpoint was trained with optimizer '" + opt +
                                  "' but the trainer uses '" + trainer.optimizer().name() + "'");
    optimizer_steps = ts.at("optimizer_steps").get<int64_t>();
    s.batches_drawn = ts.at("sampler_batches").get<int64_t>();
  });
  s.rng = rng_from_json(ts.value("sampler_rng", nlohmann::json()), json_path, "sampler RNG");
  dropout = rng_from_json(ts.value("dropout_rng", nlohmann::json()), json_path, "dropout RNG");
  SafetensorsFile file;
  as_checkpoint_error(path, [&] {
    file = read_safetensors(path);
    require_finite(file, path);
  });
  NamedBuffers state;
  const auto names = state_names(trainer.optimizer(), false);
  for (auto& [name, t] : file.tensors) state.emplace_back(rename_state(name, names), t.data);
  as_checkpoint_error(path, [&] { trainer.optimizer().load_state(state, optimizer_steps); });
  trainer.sampler().set_state(s);
  trainer.model().dropout_rng().set_state(dropout);
  trainer.set_step(info.step);
}

std::string checkpoint_sha256(const std::string& dir) {
  const fs::path d(dir);
  std::string sha;
  as_checkpoint_error(dir, [&] {
    sha = sha256_file((d / (has_manifest(dir) ? kManifestFile : "model.safetensors")).string());
  });
  return sha;
}

void verify_checkpoint(const std::string& dir, const std::string& recorded_sha256) {
  if (has_manifest(dir)) {
    try {
      verify_manifest(dir, recorded_sha256, "checkpoint");
    } catch (const std::exception& e) {
      throw CheckpointError(e.what());
    }
    return;
  }
  // Saved before manifests existed: only model.safetensors was recorded.
  if (recorded_sha256.empty()) return;
  const std::string model_file = (fs::path(dir) / "model.safetensors").string();
  std::string sha;
  as_checkpoint_error(model_file, [&] { sha = sha256_file(model_file); });
  if (sha != recorded_sha256)
    throw CheckpointError(model_file +
                          ": SHA-256 differs from the one recorded when the checkpoint was saved "
                          "(the file was modified or is corrupt)");
}

// ------------------------------------------------------------------ saver

CheckpointSaver::CheckpointSaver(const Tokenizer& tok, CheckpointPolicy policy, DirFn dir_of,
                                 SavedFn on_saved)
    : tok_(tok), policy_(policy), dir_of_(std::move(dir_of)), on_saved_(std::move(on_saved)) {}

std::string CheckpointSaver::save(Trainer& t) {
  const std::string dir = dir_of_(t.step());
  save_checkpoint(dir, t.model(), t.config(), tok_, &t, finetune_);
  last_dir_ = dir;
  last_step_ = t.step();
  std::erase(kept_, dir);
  kept_.push_back(dir);
  if (on_saved_) on_saved_(t.step(), dir);
  // Prune only after the new one is complete and registered.
  while (policy_.keep_last > 0 && kept_.size() > size_t(policy_.keep_last)) {
    std::error_code ec;
    fs::remove_all(kept_.front(), ec);
    kept_.erase(kept_.begin());
  }
  return dir;
}

void CheckpointSaver::on_step_end(Trainer& t, const StepMetrics& m) {
  if (policy_.interval <= 0 || t.step() % policy_.interval != 0) return;
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) return;  // diverged step
  save(t);
}

void CheckpointSaver::on_train_end(Trainer& t, const TrainSummary& s) {
  if (!policy_.at_end || s.status == RunStatus::kDiverged || s.status == RunStatus::kFailed) return;
  if (t.step() == 0 || last_step_ == t.step()) return;
  save(t);
}

}  // namespace bl
