#include "core/model.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_set>

#include "core/aux_outputs.h"
#include "ops/check.h"
#include "ops/cross_entropy.h"
#include "ops/distill_loss.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "quant/quantized_linear.h"
#include "tensor/graph.h"

namespace bl {

LanguageModel::LanguageModel(const ModelConfig& cfg) : cfg_(cfg) {
  validate(cfg_);
  const BlockConfig& base = cfg_.block;
  embed_ = add_parameter("embed_tokens.weight", Shape{cfg_.vocab_size, base.d_model});
  std::unique_ptr<PositionEncoding> pos = position_registry().create(base.position, base);
  if (pos->is_absolute()) abs_position_ = add_module("position", std::move(pos));
  for (int64_t i = 0; i < cfg_.n_layers; ++i)
    blocks_.push_back(add_module("layers." + std::to_string(i),
                                 std::make_unique<Block>(cfg_.get_block_config(i))));
  for (size_t i = 0; i < blocks_.size(); ++i) blocks_[i]->set_layer_index(int64_t(i));
  final_norm_ = add_module("norm", norm_registry().create(base.norm, base));
  for (int64_t k = 0; k < cfg_.mtp_n_predict; ++k) {
    mtp_.push_back(add_module("mtp." + std::to_string(k), std::make_unique<MTPHead>(base)));
    mtp_names_.push_back("mtp_loss/depth" + std::to_string(k + 1));
  }
  if (!cfg_.tie_embeddings)
    lm_head_ = add_parameter("lm_head.weight", Shape{cfg_.vocab_size, base.d_model});
  logit_scale_ = float(1.0 / cfg_.width_mult());
  for (auto& [name, p] : named_parameters()) p->set_name(name);
  if (cfg_.mup_base_width) {
    // μP (Tensor Programs V, Adam): hidden matrices get init std / sqrt(width_mult)
    // and learning rate / width_mult; embeddings, vectors and the (1/width_mult
    // scaled) readout keep the base values.
    const float lr_scale = float(1.0 / cfg_.width_mult());
    for (auto& [name, p] : named_parameters())
      if (p->shape().rank >= 2 && p != embed_ && p != lm_head_ &&
          (name.rfind("layers.", 0) == 0 || name.rfind("mtp.", 0) == 0)) {
        p->set_lr_scale(lr_scale);
        mup_hidden_.push_back(p);
      }
  }
}

Tensor LanguageModel::hidden(const Tokens& tokens, DecodeState* state, bool training) {
  op_check(tokens.shape.rank == 2, "model",
           "tokens must be (batch, seq), got " + tokens.shape.str());
  op_check(!state || state->size() == blocks_.size(), "model",
           "decode state has wrong layer count");
  const int64_t offset = state ? (*state)[0]->length : 0;
  aux_outputs().clear();
  Tensor x = embed_tokens(tokens);
  if (abs_position_) x = abs_position_->embed(x, offset);
  for (size_t i = 0; i < blocks_.size(); ++i)
    x = blocks_[i]->forward(x, state ? (*state)[i].get() : nullptr, training, dropout_rng_);
  return x;
}

std::vector<Tensor> LanguageModel::lens_logits(const Tokens& tokens) {
  op_check(tokens.shape.rank == 2, "model",
           "tokens must be (batch, seq), got " + tokens.shape.str());
  aux_outputs().clear();
  std::vector<Tensor> out;
  Tensor x = embed_tokens(tokens);
  if (abs_position_) x = abs_position_->embed(x, 0);
  out.push_back(logits_of(x));
  for (auto& b : blocks_) {
    x = b->forward(x, nullptr, false, dropout_rng_);
    out.push_back(logits_of(x));
  }
  return out;
}

Tensor LanguageModel::embed_tokens(const Tokens& tokens) {
  Tensor e =
      embed_q_ ? bl::quantized_embedding(*embed_q_, tokens) : embedding(embed_->tensor(), tokens);
  // Gemma's sqrt(d_model), rounded to float as its reference rounds it.
  if (cfg_.embed_scale != 1.0) e = scale(e, float(cfg_.embed_scale));
  return e;
}

Tensor LanguageModel::logits_of(const Tensor& hidden) {
  Tensor x = final_norm_->forward(hidden);
  Tensor logits;
  if (cfg_.tie_embeddings)
    logits = embed_q_ ? quantized_linear(x, *embed_q_) : linear(x, embed_->tensor());
  else
    logits = head_q_ ? quantized_linear(x, *head_q_) : linear(x, lm_head_->tensor());
  if (logit_scale_ != 1.0f) logits = scale(logits, logit_scale_);
  return logits;
}

Tensor LanguageModel::forward(const Tokens& tokens, DecodeState* state, bool training) {
  return logits_of(hidden(tokens, state, training));
}

void LanguageModel::add_mtp_loss(const Tensor& h, const Tokens& targets, bool training) {
  const int64_t B = targets.shape[0], T = targets.shape[1];
  Graph& g = current_graph();
  Tensor hk = h, sum;
  for (int64_t k = 1; k <= int64_t(mtp_.size()); ++k) {
    // Depth k at position i reads token t(i+k) = targets[i+k-1] and predicts
    // t(i+k+1) = targets[i+k]; positions past the end are ignored (-1).
    int32_t* prev = g.alloc_as<int32_t>(B * T);
    int32_t* next = g.alloc_as<int32_t>(B * T);
    for (int64_t b = 0; b < B; ++b) {
      const int32_t* row = targets.data + b * T;
      for (int64_t i = 0; i < T; ++i) {
        prev[b * T + i] = i + k - 1 < T ? row[i + k - 1] : 0;
        next[b * T + i] = i + k < T ? row[i + k] : -1;
      }
    }
    Tensor e = embed_tokens(Tokens{prev, targets.shape});
    hk = mtp_[size_t(k - 1)]->forward(hk, e, training, dropout_rng_);
    Tensor lk = cross_entropy(logits_of(hk), Tokens{next, targets.shape});
    aux_outputs().add_metric(mtp_names_[size_t(k - 1)], double(lk.item()));
    sum = k == 1 ? lk : add(sum, lk);
  }
  aux_outputs().add_loss("mtp_loss", scale(sum, 1.0f / float(mtp_.size())), float(cfg_.mtp_lambda));
}

Tensor LanguageModel::loss(const Tokens& tokens, const Tokens& targets, bool training) {
  Tensor h = hidden(tokens, nullptr, training);
  Tensor total = cross_entropy(logits_of(h), targets);
  if (ReplicaScope::current() == 0) lm_loss_ = double(total.item());
  return with_aux_losses(total, h, targets, training);
}

Tensor LanguageModel::distill_loss(const Tokens& tokens, const Tokens& targets,
                                   const Tensor& teacher_logits, float temperature, float alpha,
                                   DistillParts* parts, bool training) {
  Tensor h = hidden(tokens, nullptr, training);
  DistillParts p;
  Tensor total = bl::distill_loss(logits_of(h), teacher_logits, targets, temperature, alpha, &p);
  if (ReplicaScope::current() == 0) lm_loss_ = p.ce;
  if (parts) *parts = p;
  return with_aux_losses(total, h, targets, training);
}

Tensor LanguageModel::sequence_logprobs(const Tokens& tokens, const Tokens& targets,
                                        bool training) {
  return sequence_logprob(forward(tokens, nullptr, training), targets);
}

Tensor LanguageModel::preference_loss(const Tokens& tokens, const Tokens& targets,
                                      const float* ref_logp, float beta, DpoParts* parts,
                                      bool training) {
  Tensor h = hidden(tokens, nullptr, training);
  DpoParts p;
  Tensor total = dpo_loss(sequence_logprob(logits_of(h), targets), ref_logp, beta, &p);
  if (ReplicaScope::current() == 0) lm_loss_ = double(total.item());
  if (parts) *parts = p;
  return with_aux_losses(total, h, targets, /*training=*/false);  // no MTP: see the header
}

Tensor LanguageModel::with_aux_losses(Tensor total, const Tensor& h, const Tokens& targets,
                                      bool training) {
  // MTP heads train the trunk; evaluation (training = false) reports the main loss only.
  if (training && !mtp_.empty()) add_mtp_loss(h, targets, training);
  for (const AuxOutputs::Loss& l : aux_outputs().losses())
    if (l.weight != 0.0f) total = add(total, scale(l.value, l.weight));
  return total;
}

bool LanguageModel::data_parallel_safe() const {
  // Components known to keep no state in their training forward.
  static const std::set<std::string> kAttention = {
      "mha", "gqa", "gated_gqa", "sliding_window_gqa", "chunked_gqa", "mla", "none"};
  static const std::set<std::string> kFfn = {"standard", "gated", "relu2", "gated_relu2", "none"};
  if (cfg_.mtp_n_predict > 0) return false;
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    const BlockConfig b = cfg_.get_block_config(i);
    if (b.dropout != 0.0 || !kAttention.count(b.attention) || !kFfn.count(b.ffn)) return false;
  }
  return true;
}

void LanguageModel::init_weights(Rng& rng) {
  const float std = float(cfg_.init_std);
  const float resid_std = std / std::sqrt(2.0f * float(cfg_.n_layers));
  const float mup_mul = float(1.0 / std::sqrt(cfg_.width_mult()));
  for (Parameter* p : parameters()) {
    const bool hidden = std::find(mup_hidden_.begin(), mup_hidden_.end(), p) != mup_hidden_.end();
    const float mul = hidden ? mup_mul : 1.0f;  // μP: hidden matrices shrink with width
    switch (p->init_kind()) {
      case Init::kNormal:
        p->init_normal(rng, std * mul);
        break;
      case Init::kResidualNormal:
        p->init_normal(rng, resid_std * mul);
        break;
      case Init::kZeros:
        p->fill(0.0f);
        break;
      case Init::kOnes:
        p->fill(1.0f);
        break;
      case Init::kCustom:
        break;
    }
  }
  visit([&](Module& m) { m.init_custom(rng); });
}

void LanguageModel::quantize_embeddings(const QuantSpec& spec) {
  const int64_t V = cfg_.vocab_size, D = cfg_.block.d_model;
  if (!embed_q_) {
    auto q = std::make_unique<QuantizedMatrix>(embed_->data(), V, D, spec);
    std::unique_ptr<QuantizedMatrix> h;
    if (lm_head_) h = std::make_unique<QuantizedMatrix>(lm_head_->data(), V, D, spec);
    embed_q_ = std::move(q);
    remove_parameter("embed_tokens.weight");
    embed_ = nullptr;
    if (h) {
      head_q_ = std::move(h);
      remove_parameter("lm_head.weight");
      lm_head_ = nullptr;
    }
  }
}

void LanguageModel::quantize_embeddings_from(QuantizedMatrix embed,
                                             std::unique_ptr<QuantizedMatrix> head) {
  const int64_t V = cfg_.vocab_size, D = cfg_.block.d_model;
  if (embed_q_) throw std::logic_error("quantize_embeddings_from: already quantized");
  if (bool(head) != bool(lm_head_))
    throw std::invalid_argument(lm_head_ ? "the untied LM head needs its quantized table"
                                         : "a tied model has no separate LM head table");
  for (const QuantizedMatrix* q : {&embed, head.get()})
    if (q && (q->rows() != V || q->cols() != D))
      throw std::invalid_argument("quantized table is (" + std::to_string(q->rows()) + ", " +
                                  std::to_string(q->cols()) + "), the model needs (" +
                                  std::to_string(V) + ", " + std::to_string(D) + ")");
  embed_q_ = std::make_unique<QuantizedMatrix>(std::move(embed));
  remove_parameter("embed_tokens.weight");
  embed_ = nullptr;
  if (head) {
    head_q_ = std::move(head);
    remove_parameter("lm_head.weight");
    lm_head_ = nullptr;
  }
}

void LanguageModel::dequantize_embeddings() {
  const int64_t V = cfg_.vocab_size, D = cfg_.block.d_model;
  auto restore = [&](std::unique_ptr<QuantizedMatrix>& q, const char* name) {
    std::vector<float> w = q->dequantize_all();
    Parameter* p = add_parameter(name, Shape{V, D});
    p->set_name(name);
    std::copy(w.begin(), w.end(), p->data());
    q.reset();
    return p;
  };
  if (embed_q_) embed_ = restore(embed_q_, "embed_tokens.weight");
  if (head_q_) lm_head_ = restore(head_q_, "lm_head.weight");
}

int64_t LanguageModel::quantized_elements() const {
  return (embed_q_ ? embed_q_->rows() * embed_q_->cols() : 0) +
         (head_q_ ? head_q_->rows() * head_q_->cols() : 0);
}

DecodeState LanguageModel::make_decode_state(int64_t batch, int64_t max_len) const {
  DecodeState s;
  for (Block* b : blocks_) s.push_back(b->attention().make_state(batch, max_len));
  return s;
}

int64_t LanguageModel::matmul_parameters() {
  const int64_t embed = cfg_.vocab_size * cfg_.block.d_model;  // also when quantized
  int64_t n = num_parameters() - embed;
  if (abs_position_) n -= abs_position_->num_parameters();
  return n + (cfg_.tie_embeddings ? embed : 0);
}

std::vector<LayerStats> LanguageModel::layer_stats(int64_t seq_len) {
  std::vector<LayerStats> out;
  for (Block* b : blocks_) {
    LayerStats s;
    s.attention = b->config().attention;
    s.ffn = b->config().ffn;
    s.params = b->num_parameters();
    s.active_params = s.params;
    if (b->ffn()) s.active_params -= b->ffn()->num_parameters() - b->ffn()->active_parameters();
    s.flops_per_token =
        6.0 * double(s.active_params) + 3.0 * b->attention().mixing_flops_per_token(seq_len);
    out.push_back(s);
  }
  return out;
}

double LanguageModel::flops_per_token(int64_t seq_len) {
  double f = 0;
  for (const LayerStats& s : layer_stats(seq_len)) f += s.flops_per_token;
  // LM head matmul (counted even when tied) and the final norm's weights.
  f += 6.0 * double(cfg_.vocab_size * cfg_.block.d_model);
  f += 6.0 * double(final_norm_->num_parameters());
  // Each MTP depth (training only): its own weights, its block's mixing, and
  // another pass through the final norm and LM head.
  for (MTPHead* h : mtp_) {
    f += 6.0 * double(h->active_parameters()) + 6.0 * double(cfg_.vocab_size * cfg_.block.d_model);
    f += 3.0 * h->attention_mixing_flops(seq_len) + 6.0 * double(final_norm_->num_parameters());
  }
  return f;
}

}  // namespace bl
