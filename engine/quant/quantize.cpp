#include "quant/quantize.h"

#include <stdexcept>
#include <unordered_set>

#include "core/linear.h"

namespace bl {

void rename_parameters(Module& model) {
  for (auto& [name, p] : model.named_parameters()) p->set_name(name);
}

int64_t model_weight_bytes(LanguageModel& model) {
  int64_t bytes = 0;
  std::unordered_set<Parameter*> seen;
  for (Parameter* p : model.parameters())
    if (seen.insert(p).second) bytes += int64_t(sizeof(float)) * p->numel();
  model.visit([&](Module& m) {
    if (auto* l = dynamic_cast<Linear*>(&m); l && l->quantized())
      bytes += l->quantized_weight()->bytes();
  });
  if (model.quantized_embedding()) bytes += model.quantized_embedding()->bytes();
  if (model.quantized_lm_head()) bytes += model.quantized_lm_head()->bytes();
  return bytes;
}

QuantizeReport quantize_model(LanguageModel& model, int bits, int64_t group_size,
                              const std::string& mode) {
  QuantSpec spec;
  if (mode == "affine")
    spec.mode = QuantMode::kAffine;
  else if (mode == "nf4")
    spec.mode = QuantMode::kNF4;
  else
    throw std::invalid_argument("quantization mode must be 'affine' or 'nf4', got '" + mode + "'");
  spec.bits = bits;
  spec.group_size = group_size;
  return quantize_model(model, spec);
}

QuantizeReport quantize_model(LanguageModel& model, const QuantSpec& spec) {
  spec.validate();
  QuantizeReport r;
  r.bytes_before = model_weight_bytes(model);
  const int64_t gs = spec.group_size;
  model.visit_named([&](const std::string& path, Module& m) {
    auto* l = dynamic_cast<Linear*>(&m);
    if (!l || l->quantized()) return;
    if (l->in_features() % gs != 0) {
      r.skipped.push_back(path + ": in_features " + std::to_string(l->in_features()) +
                          " is not a multiple of group size " + std::to_string(gs));
      return;
    }
    l->quantize(spec);
    ++r.quantized;
  });
  const int64_t d = model.config().block.d_model;
  if (!model.quantized_embedding()) {
    if (d % gs != 0) {
      r.skipped.push_back("embed_tokens: d_model " + std::to_string(d) +
                          " is not a multiple of group size " + std::to_string(gs));
    } else {
      model.quantize_embeddings(spec);
      r.quantized += model.config().tie_embeddings ? 1 : 2;
    }
  }
  rename_parameters(model);
  r.bytes_after = model_weight_bytes(model);
  return r;
}

void dequantize_model(LanguageModel& model) {
  model.visit([&](Module& m) {
    if (auto* l = dynamic_cast<Linear*>(&m)) l->dequantize();
  });
  model.dequantize_embeddings();
  rename_parameters(model);
}

}  // namespace bl
