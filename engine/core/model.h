// Decoder-only language model: token embedding (+ absolute position) ->
// n_layers Blocks -> final norm -> LM head (tied to the embedding by default).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/block.h"
#include "core/config.h"
#include "core/mtp_head.h"
#include "ops/distill_loss.h"
#include "ops/dpo_loss.h"
#include "ops/embedding.h"
#include "quant/quantized_matrix.h"
#include "tensor/rng.h"

namespace bl {

/// Per-layer decoding states for incremental generation.
using DecodeState = std::vector<std::unique_ptr<LayerState>>;

/// Parameter and FLOP accounting of one layer (or the whole model).
struct LayerStats {
  std::string attention, ffn;
  int64_t params = 0;
  int64_t active_params = 0;   // per token (MoE: active experts only)
  double flops_per_token = 0;  // training (forward + backward) FLOPs per token
};

class LanguageModel : public Module {
 public:
  explicit LanguageModel(const ModelConfig& cfg);  // validates cfg (throws ConfigError)

  /// tokens (B, T) -> logits (B, T, vocab). With a state: T new tokens continue
  /// the sequences held in it (positions state[0]->length ...).
  Tensor forward(const Tokens& tokens, DecodeState* state = nullptr, bool training = false);
  /// Training objective: mean next-token cross-entropy of forward(tokens)
  /// against targets (B, T), plus every weighted auxiliary loss the forward
  /// emitted (aux_outputs()). lm_loss() is the cross-entropy alone.
  Tensor loss(const Tokens& tokens, const Tokens& targets, bool training = true);
  /// Distillation objective (ops/distill_loss.h) against a teacher's logits
  /// (B, T, vocab) for the same tokens, plus the same auxiliary losses as
  /// loss(); lm_loss() is then its hard-label cross-entropy.
  Tensor distill_loss(const Tokens& tokens, const Tokens& targets, const Tensor& teacher_logits,
                      float temperature, float alpha, DistillParts* parts = nullptr,
                      bool training = true);
  /// The logit lens (nostalgebraist 2020): the final norm and LM head applied
  /// to the residual stream after the embeddings and after every block, so
  /// n_layers + 1 logits (B, T, vocab) in that order; the last is forward()'s.
  /// Evaluation mode; call under a NoGradGuard to keep no tape.
  std::vector<Tensor> lens_logits(const Tokens& tokens);
  /// Summed log-probability of each row's targets >= 0, (B): how likely the
  /// model finds each completion (ops/cross_entropy.h sequence_logprob).
  Tensor sequence_logprobs(const Tokens& tokens, const Tokens& targets, bool training = false);
  /// DPO objective (ops/dpo_loss.h) on 2B rows, B chosen then B rejected
  /// completions (targets -1 outside them), against the reference model's
  /// sequence log-probabilities, plus MoE auxiliary losses (MTP heads, which
  /// predict the text itself, are not trained by it). lm_loss() is the DPO loss.
  Tensor preference_loss(const Tokens& tokens, const Tokens& targets, const float* ref_logp,
                         float beta, DpoParts* parts = nullptr, bool training = true);
  /// Cross-entropy part of the last loss() (what eval and train loss report;
  /// under a ReplicaScope other than 0, not recorded).
  double lm_loss() const { return lm_loss_; }
  /// Whether replicas of this model may run forward/backward concurrently on
  /// separate threads (data-parallel training): no component changes state in
  /// its forward (MoE load statistics), draws from the shared dropout RNG, or
  /// adds auxiliary losses (MTP).
  bool data_parallel_safe() const;

  /// N(0, init_std) weights, init_std/sqrt(2 n_layers) for residual projections,
  /// zero biases, unit norm weights (GPT-2 / the PyTorch reference recipe).
  void init_weights(Rng& rng);
  DecodeState make_decode_state(int64_t batch, int64_t max_len) const;

  const ModelConfig& config() const { return cfg_; }
  int64_t n_layers() const { return int64_t(blocks_.size()); }
  Block& block(int64_t i) { return *blocks_[size_t(i)]; }
  int64_t n_mtp_heads() const { return int64_t(mtp_.size()); }
  MTPHead& mtp_head(int64_t k) { return *mtp_[size_t(k)]; }
  /// Parameters that take part in a matmul (non-embedding + LM head), as in PaLM's 6N.
  int64_t matmul_parameters();
  /// Training FLOPs per token at context seq_len: 6 * matmul params + 3 * attention mixing.
  double flops_per_token(int64_t seq_len);
  std::vector<LayerStats> layer_stats(int64_t seq_len);
  /// Quantizes the token embedding and the LM head (quant/quantize.h). With tied
  /// embeddings one quantized table serves both the lookup and the logits, so
  /// they stay tied. Throws std::invalid_argument if d_model is not a multiple
  /// of the group size (the model is left unchanged).
  void quantize_embeddings(const QuantSpec& spec);
  /// Stored quantized tables (a checkpoint): the embedding, and the LM head when
  /// untied (`head` must be given exactly then). Each must be (vocab, d_model).
  void quantize_embeddings_from(QuantizedMatrix embed, std::unique_ptr<QuantizedMatrix> head);
  /// Restores float embedding / LM head Parameters from the quantized values.
  void dequantize_embeddings();
  const QuantizedMatrix* quantized_embedding() const { return embed_q_.get(); }
  const QuantizedMatrix* quantized_lm_head() const { return head_q_.get(); }
  int64_t quantized_elements() const override;
  /// Dropout randomness (only used when training with dropout > 0).
  Rng& dropout_rng() { return dropout_rng_; }

 private:
  /// Blocks' output (B, T, d_model) before the final norm.
  Tensor hidden(const Tokens& tokens, DecodeState* state, bool training);
  /// Token embedding lookup (float or quantized table).
  Tensor embed_tokens(const Tokens& tokens);
  /// total + the MTP heads' and every weighted auxiliary loss of this forward.
  Tensor with_aux_losses(Tensor total, const Tensor& h, const Tokens& targets, bool training);
  /// Final norm, LM head and μP logit scale.
  Tensor logits_of(const Tensor& hidden);
  /// Adds the MTP heads' mean loss to aux_outputs() (weight mtp_lambda).
  void add_mtp_loss(const Tensor& h, const Tokens& targets, bool training);

  ModelConfig cfg_;
  Parameter* embed_;  // (vocab, d_model)
  PositionEncoding* abs_position_ = nullptr;
  std::vector<Block*> blocks_;
  Norm* final_norm_;
  std::vector<MTPHead*> mtp_;           // mtp_n_predict heads (training only)
  std::vector<std::string> mtp_names_;  // their metric names, built once (no per-step allocation)
  std::vector<Parameter*> mup_hidden_;  // μP: matrices whose init and lr scale with width
  Parameter* lm_head_ = nullptr;        // (vocab, d_model) when untied
  std::unique_ptr<QuantizedMatrix> embed_q_, head_q_;  // replace embed_ / lm_head_ when set
  float logit_scale_ = 1.0f;                           // μP: 1 / width_mult
  Rng dropout_rng_{0};
  double lm_loss_ = 0;
};

}  // namespace bl
