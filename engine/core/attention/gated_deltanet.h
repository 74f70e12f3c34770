// Gated DeltaNet (Yang, Kautz, Hatamizadeh 2024; lmxlab's "gated_deltanet"):
// linear attention whose per-head state S (head_dim x head_dim) follows the
// gated delta rule  S_t = alpha_t S_{t-1} (I - beta_t k_t k_tᵀ) + beta_t v_t k_tᵀ,
// o_t = S_t q_t / sqrt(head_dim), with
//   q, k, v: projections (n_heads x head_dim), optionally through a causal
//            depthwise short conv + SiLU (use_short_conv, conv_kernel_size),
//            q and k L2-normalised per head;
//   beta_t = sigmoid(W_b x), alpha_t = exp(g_t),
//   g_t = -exp(A_log) * softplus(W_a x + dt_bias)  (per head, Mamba-2 style);
//   output: per-head RMSNorm(o) * SiLU(W_z x), then o_proj.
// Training and full passes use the chunkwise form (ops/gated_delta_rule.h);
// decoding runs the recurrence on a per-layer state (S plus the conv tails).
// Positions come from the causal structure (and the short conv): relative
// encodings (rope, alibi) are ignored, as in lmxlab, so use position "none"
// (absolute ones, learned / sinusoidal, still act at the model input).
// Where lmxlab's educational version differs, this follows the paper and
// flash-linear-attention: Mamba-2 decay instead of sigmoid(W x), SiLU after
// the conv on q, k and v (lmxlab: q only), the 1/sqrt(head_dim) output scale
// and the gated output RMSNorm. Like both, no projection has a bias; the
// n_kv_heads and qk_norm fields are not used (q and k are always L2-normalised).
#pragma once

#include "core/components.h"
#include "core/linear.h"
#include "tensor/parameter.h"

namespace bl {

/// Recurrent decoding state: S per (batch, head) and the last
/// conv_kernel_size - 1 pre-conv q, k, v rows when the short conv is on.
struct GatedDeltaNetState : CloneableState<GatedDeltaNetState> {
  Buffer s;                       // (batch, n_heads, head_dim, head_dim), Sᵀ per head
  Buffer q_tail, k_tail, v_tail;  // (batch, conv_kernel_size - 1, n_heads * head_dim)

 protected:
  std::vector<Buffer*> batch_buffers() override { return {&s, &q_tail, &k_tail, &v_tail}; }
};

class GatedDeltaNet : public Attention {
 public:
  /// Default positions per chunk of the chunkwise form. FLA uses 64 on GPUs;
  /// on CPU 16-32 is faster (bench/deltanet_bench.cpp sweeps 16/32/64 at head_dim
  /// 32-128): per token the work is ~10 C D + 6 D^2, and 32 keeps the saved
  /// per-chunk states (D^2 / C floats per token and head) small.
  static constexpr int64_t kDefaultChunk = 32;

  explicit GatedDeltaNet(const BlockConfig& c);
  Tensor forward(const Tensor& x, PositionEncoding& pos, LayerState* state) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, int64_t max_len) const override;
  /// Forward FLOPs of the chunkwise form per token (all heads), projections excluded.
  double mixing_flops_per_token(int64_t seq_len) const override;
  /// A_log ~ log U(1, 16); dt_bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 1e-1];
  /// conv kernels U(±1/sqrt(K)) (torch Conv1d's default for depthwise).
  void init_custom(Rng& rng) override;
  /// Chunk length of the chunkwise form; tests set small chunks so short
  /// sequences still cross chunk boundaries.
  void set_chunk_size(int64_t n);
  int64_t chunk_size() const { return chunk_; }

 private:
  int64_t d_model_, n_heads_, head_dim_, kernel_, chunk_ = kDefaultChunk;
  bool use_conv_;
  float norm_eps_;
  Linear *q_proj_, *k_proj_, *v_proj_, *a_proj_, *b_proj_, *z_proj_, *o_proj_;
  Parameter *a_log_, *dt_bias_, *o_norm_;
  Parameter *q_conv_ = nullptr, *k_conv_ = nullptr, *v_conv_ = nullptr;  // (n_heads * head_dim, K)
};

}  // namespace bl
