// Every built-in component, registered by name in one place.
#include "core/components.h"

#include "core/attention/gqa.h"
#include "core/attention/mha.h"
#include "core/attention/mla.h"
#include "core/attention/sparse_gqa.h"
#include "core/config.h"
#include "core/ffn/gated.h"
#include "core/ffn/standard.h"
#include "core/norm/layer_norm.h"
#include "core/norm/rms_norm.h"
#include "core/position/alibi.h"
#include "core/position/learned.h"
#include "core/position/none.h"
#include "core/position/rope.h"
#include "core/position/sinusoidal.h"

namespace bl {

namespace {
template <class T, class Base>
typename Registry<Base>::Factory make() {
  return [](const BlockConfig& c) { return std::unique_ptr<Base>(new T(c)); };
}

void register_attention(Registry<Attention>& r) {
  r.add("mha", make<MHA, Attention>(), "multi-head attention (n_kv_heads = n_heads)", {"qk_norm"});
  r.add("gqa", make<GQA, Attention>(), "grouped-query attention (n_kv_heads; 1 = MQA)",
        {"n_kv_heads", "qk_norm"});
  r.add("mla", make<MLA, Attention>(),
        "multi-head latent attention (DeepSeek V2/V3): caches only the KV latent and a shared "
        "RoPE key",
        {"kv_lora_rank", "q_lora_rank", "rope_dim", "rope_theta"});
  r.add("sparse_gqa", make<SparseGQA, Attention>(),
        "sparse attention (DeepSeek / NSA): compressed blocks + top-k selected blocks + sliding "
        "window, summed",
        {"n_kv_heads", "qk_norm", "sparse_compress_ratio", "sparse_select_k", "window_size"});
}
void register_ffn(Registry<FeedForward>& r) {
  r.add("standard", make<StandardFFN, FeedForward>(), "down(GELU(up(x)))");
  r.add("gated", make<GatedFFN, FeedForward>(), "SwiGLU: down(silu(gate(x)) * up(x))");
}
void register_norm(Registry<Norm>& r) {
  r.add("layer_norm", make<LayerNormComponent, Norm>(), "LayerNorm (weight, bias if bias)");
  r.add("rms_norm", make<RMSNormComponent, Norm>(), "RMSNorm (weight)");
}
void register_position(Registry<PositionEncoding>& r) {
  r.add("sinusoidal", make<SinusoidalPosition, PositionEncoding>(),
        "fixed sin/cos, added to embeddings");
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
