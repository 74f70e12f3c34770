#include "core/model_report.h"

#include "tensor/parameter.h"

namespace bl {

ModelReport report_model(const ModelConfig& m, int64_t seq_len) {
  MetaParameterScope meta;
  LanguageModel model(m);
  ModelReport r;
  r.seq_len = seq_len;
  r.params = model.num_parameters();
  r.flops_per_token = model.flops_per_token(seq_len);
  r.layers = model.layer_stats(seq_len);
  for (int64_t k = 0; k < model.n_mtp_heads(); ++k)
    r.mtp_params += model.mtp_head(k).num_parameters();
  r.embedding_params = r.params - model.matmul_parameters();
  if (m.tie_embeddings) r.embedding_params += m.vocab_size * m.block.d_model;
  r.active_params = r.params - r.mtp_params;
  for (const LayerStats& s : r.layers) {
    r.active_params -= s.params - s.active_params;
    LayerTypeStats* t = nullptr;
    for (LayerTypeStats& e : r.by_type)
      if (e.attention == s.attention && e.ffn == s.ffn) t = &e;
    if (!t) {
      r.by_type.push_back({s.attention, s.ffn});
      t = &r.by_type.back();
    }
    ++t->layers;
    t->params += s.params;
    t->active_params += s.active_params;
    t->flops_per_token += s.flops_per_token;
  }
  return r;
}

}  // namespace bl
