#include "interop/hf_folder.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/model_report.h"
#include "data/bpe_tokenizer.h"
#include "interop/hf_weights.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"

namespace bl {

namespace fs = std::filesystem;

namespace {

// The BPE form of the byte tokenizer: 256 single-byte tokens, no merges. A
// byte-level BPE without merges emits one token per byte, so ids equal bytes.
BpeTokenizer byte_bpe() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, char(b));
  return BpeTokenizer(std::move(tokens), {});
}

// Runs f, turning config and format errors into HfError with their own message.
template <class F>
auto as_hf_error(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const HfError&) {
    throw;
  } catch (const FormatError& e) {
    throw HfError(e.what());
  } catch (const std::bad_alloc&) {
    throw HfError(context + ": not enough memory");
  } catch (const std::exception& e) {
    throw HfError(context + ": " + e.what());
  }
}

// A shard file name from model.safetensors.index.json: a plain name in the folder.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s.find('/') == std::string::npos && s.find('\\') == std::string::npos &&
         s != "." && s != "..";
}

// One safetensors file, validated and checked for non-finite values.
std::map<std::string, LoadedTensor> read_file(const fs::path& p) {
  return as_hf_error(p.string(), [&] {
    SafetensorsFile x = read_safetensors(p.string());
    require_finite(x, p.string());
    return std::move(x.tensors);
  });
}

std::map<std::string, LoadedTensor> read_weights(const fs::path& dir) {
  std::error_code ec;
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (fs::exists(single, ec)) return read_file(single);
  if (!fs::exists(index, ec))
    throw HfError(dir.string() +
                  ": no model.safetensors or model.safetensors.index.json (PyTorch .bin "
                  "files are not read: they are pickles that can run code)");
  const nlohmann::json j =
      as_hf_error(index.string(), [&] { return read_json_file(index.string()); });
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw HfError(index.string() + ": field 'weight_map' is missing or not an object");
  std::map<std::string, std::string> where;  // tensor -> shard file
  std::set<std::string> files;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it->is_string() || !plain_file_name(it->get<std::string>()))
      throw HfError(index.string() + ": weight_map['" + it.key() +
                    "'] must name a file in the folder, got " + it->dump());
    files.insert(it->get<std::string>());
    where[it.key()] = it->get<std::string>();
  }
  if (files.empty()) throw HfError(index.string() + ": weight_map is empty");
  std::map<std::string, LoadedTensor> tensors;
  for (const std::string& f : files)
    for (auto& [name, t] : read_file(dir / f)) {
      auto w = where.find(name);
      if (w == where.end() || w->second != f)
        throw HfError((dir / f).string() + ": tensor '" + name +
                      "' is not listed for this file in model.safetensors.index.json");
      tensors.emplace(name, std::move(t));  // unique: the index names one file per tensor
    }
  for (const auto& [name, f] : where)
    if (!tensors.count(name))
      throw HfError(index.string() + ": tensor '" + name + "' is listed in " + f +
                    " but not stored there");
  return tensors;
}

}  // namespace

HfExportReport export_hf_folder(const std::string& dir, LanguageModel& model, const Tokenizer& tok,
                                const std::string& dtype) {
  std::string st, torch;
  if (dtype == "f32")
    st = "F32", torch = "float32";
  else if (dtype == "bf16")
    st = "BF16", torch = "bfloat16";
  else if (dtype == "f16")
    st = "F16", torch = "float16";
  else
    throw std::invalid_argument("dtype '" + dtype + "' is not one of f32, bf16, f16");
  if (tok.vocab_size() > model.config().vocab_size)
    throw std::invalid_argument("the tokenizer has " + std::to_string(tok.vocab_size()) +
                                " tokens but the model only " +
                                std::to_string(model.config().vocab_size));
  HfExportReport report;
  const nlohmann::ordered_json config = hf_config_from_model(model.config(), torch);
  report.family = hf_family_of(model.config()).family;
  const std::vector<HfTensor> tensors = hf_tensors_from_model(model, report.family);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw HfError("cannot create " + dir + ": " + ec.message());
  const fs::path d(dir);
  std::vector<TensorView> views;
  for (const HfTensor& t : tensors) views.push_back({t.name, t.shape, t.data.data(), st});
  write_safetensors((d / "model.safetensors").string(), views, {{"format", "pt"}});
  report.files.push_back("model.safetensors");
  write_json_file((d / "config.json").string(), config);
  report.files.push_back("config.json");
  nlohmann::ordered_json gen;
  gen["_from_model_config"] = true;
  write_json_file((d / "generation_config.json").string(), gen);
  report.files.push_back("generation_config.json");
  // Tokenizer: HF's tokenizer.json where it represents the same ids exactly.
  fs::remove(d / "tokenizer.json", ec);
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tok)) {
    bpe->save(dir);
    report.files.push_back("tokenizer.json");
    report.tokenizer_note = "tokenizer.json (byte-level BPE, as trained)";
  } else if (tok.name() == "byte") {
    byte_bpe().save(dir);
    report.files.push_back("tokenizer.json");
    report.tokenizer_note =
        "tokenizer.json (byte tokenizer as a byte-level BPE without merges: ids = bytes)";
  } else {
    report.tokenizer_note = "no tokenizer.json: a '" + tok.name() +
                            "' tokenizer has no Hugging Face equivalent; its vocabulary is in " +
                            kHfBlocklabTokenizerFile;
  }
  write_json_file((d / kHfBlocklabTokenizerFile).string(), tok.to_json());
  report.files.push_back(kHfBlocklabTokenizerFile);
  return report;
}

bool is_hf_folder(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::exists(fs::path(dir) / "config.json", ec) &&
         !fs::exists(fs::path(dir) / "checkpoint.json", ec);
}

HfImport read_hf_folder(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec)) throw HfError(dir + ": not a directory");
  const std::string cfg_path = (d / "config.json").string();
  const nlohmann::json cfg = as_hf_error(cfg_path, [&] { return read_json_file(cfg_path); });
  HfModelConfig mc = model_config_from_hf(cfg, cfg_path);
  std::map<std::string, LoadedTensor> tensors = read_weights(d);
  // Before allocating the model: a config claiming far more parameters than
  // the files hold (> 16M values missing) fails here, cheaply; a smaller gap
  // is reported below naming the missing tensor.
  int64_t stored = 0;
  for (const auto& [name, t] : tensors) stored += int64_t(t.data.size());
  const int64_t params = report_model(mc.model, 1).params;
  if (params - stored > (int64_t(1) << 24))
    throw HfError(dir + ": config.json describes " + std::to_string(params) +
                  " parameters but the safetensors files hold only " + std::to_string(stored) +
                  " values (tensors are missing)");
  HfImport out;
  out.family = mc.family;
  out.model = as_hf_error(dir, [&] { return std::make_unique<LanguageModel>(mc.model); });
  load_hf_tensors(tensors, *out.model, mc.family, dir);
  tensors.clear();
  const fs::path ours = d / kHfBlocklabTokenizerFile, hf = d / "tokenizer.json";
  if (fs::exists(ours, ec)) {
    out.tokenizer_file = ours.string();
    out.tokenizer = as_hf_error(ours.string(),
                                [&] { return tokenizer_from_json(read_json_file(ours.string())); });
  } else if (fs::exists(hf, ec)) {
    out.tokenizer_file = hf.string();
    out.tokenizer = as_hf_error(hf.string(), [&] {
      return std::unique_ptr<Tokenizer>(std::make_unique<BpeTokenizer>(BpeTokenizer::load(dir)));
    });
  }
  if (out.tokenizer && out.tokenizer->vocab_size() > mc.model.vocab_size)
    throw HfError(out.tokenizer_file + ": the tokenizer has " +
                  std::to_string(out.tokenizer->vocab_size()) +
                  " tokens but config.json vocab_size is " + std::to_string(mc.model.vocab_size));
  return out;
}

TrainConfig hf_import_train_config(const ModelConfig& m) {
  TrainConfig t;
  t.seq_len = std::min(t.seq_len, m.block.max_seq_len);
  return t;
}

HfImport import_hf_checkpoint(const std::string& hf_dir, const std::string& out_dir) {
  HfImport in = read_hf_folder(hf_dir);
  if (!in.tokenizer)
    throw HfError(hf_dir +
                  ": no tokenizer.json (Blocklab trains and samples from text, so an imported "
                  "model needs its tokenizer)");
  save_checkpoint(out_dir, *in.model, hf_import_train_config(in.model->config()), *in.tokenizer);
  return in;
}

}  // namespace bl
