#include "lora/finetune.h"

#include <filesystem>

#include "io/sha256.h"
#include "lora/lora.h"
#include "tensor/parameter.h"

namespace bl {

std::string LoraSpec::str() const {
  std::string s(1, 'r');
  s += std::to_string(rank);
  for (size_t i = 0; i < targets.size(); ++i) {
    s += i ? ',' : ' ';
    s += targets[i];
  }
  return s;
}

nlohmann::json Finetune::summary(const std::string& adapter_path) const {
  // The spec as given (rank, alpha, targets) plus what it resolved to.
  return {{"base_checkpoint", base_checkpoint},
          {"base_sha256", base_sha256},
          {"seed", seed},
          {"rank", lora.rank},
          {"alpha", lora.alpha},
          {"targets", lora.targets},
          {"layers", lora_paths},
          {"trainable_params", counts.trainable},
          {"quantize", quant_name.empty() ? nlohmann::json() : nlohmann::json(quant_name)},
          {"adapter", adapter_path}};
}

Finetune build_finetune(const FinetuneSpec& spec) {
  Finetune f;
  f.base_checkpoint = spec.base_checkpoint;
  f.lora = spec.lora;
  f.seed = spec.seed;
  f.info = read_checkpoint_info(spec.base_checkpoint);
  const std::string weights =
      (std::filesystem::path(spec.base_checkpoint) / "model.safetensors").string();
  try {
    f.base_sha256 = sha256_file(weights);
  } catch (const std::exception& e) {
    throw CheckpointError(e.what());
  }
  if (!spec.base_sha256.empty() && f.base_sha256 != spec.base_sha256)
    throw CheckpointError(weights +
                          ": SHA-256 differs from the one recorded when the fine-tune began (the "
                          "base checkpoint was modified or replaced; an adapter only fits the base "
                          "it was trained on)");
  f.tokenizer = tokenizer_from_json(f.info.tokenizer);
  ModelConfig mc = f.info.model;
  mc.vocab_size = f.tokenizer->vocab_size();
  f.model = std::make_unique<LanguageModel>(mc);
  load_model_weights(spec.base_checkpoint, *f.model);
  f.counts.base = f.model->num_parameters();
  if (!spec.quantize.empty()) {
    const QuantSpec qs = QuantSpec::parse(spec.quantize);
    f.quant_name = qs.str();
    f.quant = quantize_model(*f.model, qs);
  }
  f.lora_paths =
      apply_lora(*f.model, spec.lora.rank, spec.lora.alpha, spec.lora.targets, spec.seed);
  f.counts.trainable = trainable_parameter_count(*f.model);
  f.counts.total = total_parameter_count(*f.model);
  f.counts.adapted_layers = int64_t(f.lora_paths.size());
  return f;
}

FinetuneSpec finetune_spec_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("fine-tune spec: not a JSON object");
  FinetuneSpec s;
  auto field = [&](const std::string& key) -> const nlohmann::json& {
    if (!j.contains(key)) throw std::invalid_argument("fine-tune spec: missing \"" + key + '"');
    return j[key];
  };
  auto bad = [](const std::string& key, const std::string& rule) {
    return std::invalid_argument("fine-tune spec: \"" + key + "\" " + rule);
  };
  if (!field("base_checkpoint").is_string() || j["base_checkpoint"].get<std::string>().empty())
    throw bad("base_checkpoint", "must be a non-empty string");
  s.base_checkpoint = j["base_checkpoint"];
  if (!field("rank").is_number_integer() || j["rank"].get<int64_t>() < 1)
    throw bad("rank", "must be an integer >= 1");
  s.lora.rank = j["rank"];
  if (!field("alpha").is_number()) throw bad("alpha", "must be a number");
  s.lora.alpha = j["alpha"].get<float>();
  const nlohmann::json& t = field("targets");
  if (!t.is_array() || t.empty()) throw bad("targets", "must be a non-empty array of strings");
  s.lora.targets.clear();
  for (const auto& v : t) {
    if (!v.is_string()) throw bad("targets", "must be a non-empty array of strings");
    s.lora.targets.push_back(v);
  }
  if (j.contains("quantize") && !j["quantize"].is_null()) {
    if (!j["quantize"].is_string()) throw bad("quantize", "must be a string or null");
    s.quantize = j["quantize"];
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_integer()) throw bad("seed", "must be an integer");
    s.seed = j["seed"].get<uint64_t>();
  }
  if (j.contains("base_sha256")) {
    if (!j["base_sha256"].is_string()) throw bad("base_sha256", "must be a string");
    s.base_sha256 = j["base_sha256"];
  }
  return s;
}

Finetune load_finetune_checkpoint(const std::string& dir) {
  const CheckpointInfo info = read_checkpoint_info(dir);
  if (info.finetune.is_null())
    throw CheckpointError(dir +
                          " is not a fine-tune checkpoint (its checkpoint.json has no "
                          "\"finetune\" spec)");
  FinetuneSpec spec;
  try {
    spec = finetune_spec_from_json(info.finetune);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError((std::filesystem::path(dir) / "checkpoint.json").string() + ": " +
                          e.what());
  }
  Finetune f;
  try {
    f = build_finetune(spec);
  } catch (const std::exception& e) {
    throw CheckpointError("base of fine-tune checkpoint " + dir + ": " + e.what());
  }
  load_trainable_weights(dir, *f.model);
  return f;
}

FinetuneCounts count_finetune(const ModelConfig& base, const LoraSpec& lora) {
  MetaParameterScope meta;  // shapes only: no weights are allocated
  LanguageModel model(base);
  FinetuneCounts c;
  c.base = model.num_parameters();
  const std::vector<std::string> paths = apply_lora(model, lora.rank, lora.alpha, lora.targets);
  c.trainable = trainable_parameter_count(model);
  c.total = total_parameter_count(model);
  c.adapted_layers = int64_t(paths.size());
  return c;
}

}  // namespace bl
