// Linear layer y = x Wᵀ + b: W (out, in) like torch.nn.Linear.
//
// Optional, for parameter-efficient fine-tuning (engine/quant, engine/lora):
//  - quantized storage: quantize() replaces the float weight Parameter by a
//    frozen QuantizedMatrix (weight becomes null); forward dequantizes on the fly.
//  - a LoRA adapter (lmxlab's LoRALinear / PEFT's lora.Linear):
//      y = x Wᵀ + b + (alpha / rank) · (x Aᵀ) Bᵀ,  A (rank, in), B (out, rank),
//    with W and b frozen; A and B are the Parameters "lora_A.weight" and
//    "lora_B.weight" of this module.
//  - a bank of several inference adapters chosen per batch row (AdapterBank).
// Components keep calling forward(); none of this changes its signature.
#pragma once

#include <array>
#include <memory>

#include "core/module.h"
#include "quant/quantized_matrix.h"

namespace bl {

class AdapterBank;

struct LoraAdapter {
  Parameter* a = nullptr;  // (rank, in)
  Parameter* b = nullptr;  // (out, rank)
  int64_t rank = 0;
  float alpha = 0;
  bool base_was_trainable = true;  // restored when the adapter is merged or removed
  float scaling() const { return alpha / float(rank); }
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Init init = Init::kNormal);
  Tensor forward(const Tensor& x);
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Parameter* weight;          // (out, in); null while the weight is quantized
  Parameter* bias = nullptr;  // (out) or null

  /// x Wᵀ + b without adapters (float or quantized weight).
  Tensor base_forward(const Tensor& x);
  /// residual + forward(x) (forward(x) when residual is undefined), the add
  /// folded into the product's epilogue when this layer is a plain float
  /// linear (no adapter, bank or quantized weight).
  Tensor forward(const Tensor& x, const Tensor& residual);
  /// forward(gelu(h)) (+ residual when defined), fused (gelu_linear) when this
  /// layer is a plain float linear.
  Tensor forward_gelu(const Tensor& h, const Tensor& residual = Tensor());
  /// q, k and v projections of one input; when all three carry a LoRA adapter
  /// their A matrices are applied in a single GEMM (fused QKV LoRA).
  static std::array<Tensor, 3> forward_qkv(Linear& q, Linear& k, Linear& v, const Tensor& x);

  // Quantization.
  bool quantized() const { return qweight_ != nullptr; }
  const QuantizedMatrix* quantized_weight() const { return qweight_.get(); }
  /// Replaces the float weight by its quantized form. Throws std::invalid_argument
  /// (from QuantizedMatrix) if in_features is not a multiple of the group size.
  void quantize(const QuantSpec& spec);
  /// Replaces the float weight by `q` (a stored quantized weight, e.g. from a
  /// checkpoint). Throws std::invalid_argument if q is not (out, in).
  void quantize_from(QuantizedMatrix q);
  /// Restores a float weight Parameter holding the dequantized values (trainable
  /// unless a LoRA adapter freezes the base).
  void dequantize();
  int64_t quantized_elements() const override;
  /// Bytes of the base weight as stored (float32 or packed + constants).
  int64_t weight_bytes() const;

  // LoRA.
  const LoraAdapter* lora() const { return lora_.rank ? &lora_ : nullptr; }
  /// Attaches an adapter (A Kaiming-normal, B zero) and freezes W and b.
  /// Throws std::logic_error if one is attached already.
  void add_lora(int64_t rank, float alpha, Rng& rng);
  /// W += (alpha / rank) · B A (a quantized base is dequantized first), then drops
  /// the adapter and restores W's trainability.
  void merge_lora();
  /// Sets the adapter's alpha (scaling alpha / rank), e.g. from a loaded adapter.
  void set_lora_alpha(float alpha) { lora_.alpha = alpha; }
  /// Drops the adapter without merging.
  void remove_lora();

  /// Inference adapters selected per batch row (lora/adapter_bank.h); null to detach.
  void set_adapter_bank(const AdapterBank* bank) { bank_ = bank; }
  const AdapterBank* adapter_bank() const { return bank_; }

 private:
  void set_base_trainable(bool on);
  int64_t in_, out_;
  std::unique_ptr<QuantizedMatrix> qweight_;
  LoraAdapter lora_;
  const AdapterBank* bank_ = nullptr;
};

}  // namespace bl
