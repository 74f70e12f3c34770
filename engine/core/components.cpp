// Every built-in component, registered by name in one place.
#include "core/components.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "core/attention/chunked_gqa.h"
#include "core/attention/gated_deltanet.h"
#include "core/attention/gated_gqa.h"
#include "core/attention/gqa.h"
#include "core/attention/mamba2.h"
#include "core/attention/mamba3.h"
#include "core/attention/mha.h"
#include "core/attention/mla.h"
#include "core/attention/none.h"
#include "core/attention/sliding_window_gqa.h"
#include "core/attention/sparse_gqa.h"
#include "core/config.h"
#include "core/ffn/gated.h"
#include "core/ffn/gated_relu2.h"
#include "core/ffn/latent_moe.h"
#include "core/ffn/moe.h"
#include "core/ffn/none.h"
#include "core/ffn/relu2.h"
#include "core/ffn/shared_moe.h"
#include "core/ffn/standard.h"
#include "core/norm/layer_norm.h"
#include "core/norm/rms_norm.h"
#include "core/position/alibi.h"
#include "core/position/learned.h"
#include "core/position/none.h"
#include "core/position/rope.h"
#include "core/position/sinusoidal.h"
#include "ops/elementwise.h"

namespace bl {

namespace {
template <class T, class Base>
typename Registry<Base>::Factory make() {
  return [](const BlockConfig& c) { return std::unique_ptr<Base>(new T(c)); };
}

void register_attention(Registry<Attention>& r) {
  r.add("mha", make<MHA, Attention>(), "multi-head attention (n_kv_heads = n_heads)",
        {"qk_norm", "head_dim", "qkv_bias"});
  r.add("gqa", make<GQA, Attention>(), "grouped-query attention (n_kv_heads; 1 = MQA)",
        {"n_kv_heads", "qk_norm", "head_dim", "qkv_bias"});
  r.add("mamba2", make<Mamba2, Attention>(),
        "Mamba-2 SSD: chunked scan for training, recurrent state for decoding",
        {"mamba_n_heads", "mamba_head_dim", "ssm_state_size", "mamba_expand", "mamba_n_groups",
         "mamba_chunk_size", "conv_kernel_size"});
  r.add("mamba3", make<Mamba3, Attention>(),
        "Mamba-3: Mamba-2 + trapezoidal rule, B/C RMSNorm, complex A (rotary B/C)",
        {"mamba_n_heads", "mamba_head_dim", "ssm_state_size", "mamba_expand", "mamba_n_groups",
         "mamba_chunk_size", "conv_kernel_size", "mamba_trapezoidal", "mamba_bc_norm",
         "mamba_complex_a"});
  r.add("gated_deltanet", make<GatedDeltaNet, Attention>(),
        "Gated DeltaNet: delta-rule linear attention with decay/update gates (chunkwise training, "
        "recurrent decoding)",
        {"use_short_conv", "conv_kernel_size"});
  r.add("none", make<NoAttention, Attention>(),
        "no attention sublayer (FFN-only layer of a hybrid stack)");
  r.add("sliding_window_gqa", make<SlidingWindowGQA, Attention>(),
        "GQA over the last window_size tokens; cache keeps only the window",
        {"n_kv_heads", "qk_norm", "window_size", "head_dim", "qkv_bias"});
  r.add("chunked_gqa", make<ChunkedGQA, Attention>(),
        "GQA within fixed chunks of attention_chunk_size (Llama 4 local layers)",
        {"n_kv_heads", "qk_norm", "attention_chunk_size", "head_dim", "qkv_bias"});
  r.add("gated_gqa", make<GatedGQA, Attention>(),
        "GQA with a sigmoid output gate before o_proj (Qwen3-Next)",
        {"n_kv_heads", "qk_norm", "head_dim", "qkv_bias"});
  r.add("mla", make<MLA, Attention>(),
        "multi-head latent attention (DeepSeek V2/V3): caches only the KV latent and a shared "
        "RoPE key",
        {"kv_lora_rank", "q_lora_rank", "rope_dim", "rope_theta"});
  r.add("sparse_gqa", make<SparseGQA, Attention>(),
        "sparse attention (DeepSeek / NSA): compressed blocks + top-k selected blocks + sliding "
        "window, summed",
        {"n_kv_heads", "qk_norm", "sparse_compress_ratio", "sparse_select_k", "window_size",
         "head_dim", "qkv_bias"});
}
void register_ffn(Registry<FeedForward>& r) {
  r.add("standard", make<StandardFFN, FeedForward>(), "down(GELU(up(x)))", {"ffn_activation"});
  r.add("gated", make<GatedFFN, FeedForward>(),
        "SwiGLU: down(silu(gate(x)) * up(x)); GeGLU with ffn_activation gelu_tanh",
        {"ffn_activation"});
  r.add("relu2", make<ReLU2FFN, FeedForward>(), "squared ReLU: down(relu(up(x))^2) (Primer)");
  r.add("gated_relu2", make<GatedReLU2FFN, FeedForward>(),
        "gated squared ReLU: down(relu(gate(x))^2 * up(x))");
  r.add("none", make<NoFFN, FeedForward>(), "no FFN sublayer (mixer-only layer)");
  r.add("moe", make<MoEFFN, FeedForward>(),
        "mixture of experts (Mixtral): softmax top-k router over SwiGLU experts, "
        "load-balancing and z-loss",
        {"n_experts", "top_k_experts", "moe_d_ff", "moe_aux_loss_coef", "moe_z_loss_coef"});
  r.add("shared_moe", make<SharedMoEFFN, FeedForward>(),
        "DeepSeek V3 MoE: shared + routed SwiGLU experts, sigmoid router, aux-loss-free bias "
        "balancing, group-limited routing",
        {"n_experts", "top_k_experts", "n_shared_experts", "moe_d_ff", "shared_expert_d_ff",
         "moe_routed_scaling_factor", "moe_n_groups", "moe_topk_groups", "moe_bias_update_rate"});
  r.add("latent_moe", make<LatentMoEFFN, FeedForward>(),
        "Nemotron-H latent MoE: relu2 experts in a moe_latent_size latent + shared relu2 "
        "expert, sigmoid router with correction bias",
        {"n_experts", "top_k_experts", "n_shared_experts", "moe_latent_size", "moe_d_ff",
         "shared_expert_d_ff", "moe_routed_scaling_factor", "moe_n_groups", "moe_topk_groups",
         "moe_bias_update_rate"});
}
void register_norm(Registry<Norm>& r) {
  r.add("layer_norm", make<LayerNormComponent, Norm>(), "LayerNorm (weight, bias if bias)");
  r.add("rms_norm", make<RMSNormComponent, Norm>(),
        "RMSNorm (weight; 1 + weight with norm_unit_offset)", {"norm_unit_offset"});
}
void register_position(Registry<PositionEncoding>& r) {
  r.add("sinusoidal", make<SinusoidalPosition, PositionEncoding>(),
        "fixed sin/cos added to embeddings (MLX/lmxlab scale; sinusoidal_vaswani: unit table)",
        {"sinusoidal_vaswani"});
  r.add("learned", make<LearnedPosition, PositionEncoding>(), "learned absolute (GPT-2 wpe)");
  r.add("rope", make<RoPE, PositionEncoding>(), "rotary on q and k (rope_theta)", {"rope_theta"});
  r.add("alibi", make<ALiBi, PositionEncoding>(), "linear distance bias per head");
  r.add("none", make<NoPosition, PositionEncoding>(), "no position information (NoPE)");
}
}  // namespace

Registry<Attention>& attention_registry() {
  static Registry<Attention> r = [] {
    Registry<Attention> reg("attention");
    register_attention(reg);
    return reg;
  }();
  return r;
}
Registry<FeedForward>& ffn_registry() {
  static Registry<FeedForward> r = [] {
    Registry<FeedForward> reg("ffn");
    register_ffn(reg);
    return reg;
  }();
  return r;
}
Registry<Norm>& norm_registry() {
  static Registry<Norm> r = [] {
    Registry<Norm> reg("norm");
    register_norm(reg);
    return reg;
  }();
  return r;
}
Registry<PositionEncoding>& position_registry() {
  static Registry<PositionEncoding> r = [] {
    Registry<PositionEncoding> reg("position");
    register_position(reg);
    return reg;
  }();
  return r;
}

}  // namespace bl

namespace bl {

// The plain residual add; mixers ending in a plain linear override these.
Tensor Attention::forward_add(const Tensor& x, PositionEncoding& pos, LayerState* state,
                              const Tensor& residual) {
  return add(residual, forward(x, pos, state));
}

Tensor FeedForward::forward_add(const Tensor& x, const Tensor& residual) {
  return add(residual, forward(x));
}

void LayerState::select_rows(const std::vector<int64_t>& rows) {
  for (int64_t r : rows)
    if (r < 0 || r >= batch)
      throw std::out_of_range("[decoding state] row " + std::to_string(r) + " of a batch of " +
                              std::to_string(batch));
  for (Buffer* b : batch_buffers()) {
    if (b->size() == 0) continue;  // a feature this configuration does not use
    const int64_t per = b->size() / batch;
    Buffer out(per * int64_t(rows.size()));
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(out.data() + int64_t(i) * per, b->data() + rows[i] * per,
                  sizeof(float) * size_t(per));
    *b = std::move(out);
  }
  batch = int64_t(rows.size());
}

}  // namespace bl
