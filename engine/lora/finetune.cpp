#include "lora/finetune.h"

#include "lora/lora.h"
#include "tensor/parameter.h"

namespace bl {

std::string LoraSpec::str() const {
  std::string s = "r" + std::to_string(rank);
  for (size_t i = 0; i < targets.size(); ++i) s += (i ? "," : " ") + targets[i];
  return s;
}

nlohmann::json Finetune::summary(const std::string& adapter_path) const {
  // The spec as given (rank, alpha, targets) plus what it resolved to.
  return {{"base_checkpoint", base_checkpoint},
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
  f.info = read_checkpoint_info(spec.base_checkpoint);
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
