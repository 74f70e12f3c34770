#include "core/linear.h"

#include <cmath>
#include <stdexcept>

#include "lora/adapter_bank.h"
#include "lora/lora_ops.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "quant/quantized_linear.h"
#include "tensor/gemm.h"

namespace bl {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Init init) : in_(in), out_(out) {
  weight = add_parameter("weight", Shape{out, in}, init);
  if (has_bias) bias = add_parameter("bias", Shape{out}, Init::kZeros);
}

Tensor Linear::base_forward(const Tensor& x) {
  const Tensor b = bias ? bias->tensor() : Tensor();
  return qweight_ ? quantized_linear(x, *qweight_, b) : linear(x, weight->tensor(), b);
}

Tensor Linear::forward(const Tensor& x) {
  Tensor y = base_forward(x);
  if (lora_.rank)
    y = lora_up_inplace(y, lora_down(x, {lora_.a->tensor()}), 0, lora_.b->tensor(),
                        lora_.scaling());
  if (bank_) y = bank_->apply(x, y);
  return y;
}

// Adapters, banks and quantized weights keep their own forward; the residual
// is then a separate add.
Tensor Linear::forward(const Tensor& x, const Tensor& residual) {
  if (qweight_ || lora_.rank || bank_) {
    const Tensor y = forward(x);
    return residual.defined() ? add(residual, y) : y;
  }
  return linear(x, weight->tensor(), bias ? bias->tensor() : Tensor(), residual);
}

Tensor Linear::forward_gelu(const Tensor& h, const Tensor& residual) {
  if (qweight_ || lora_.rank || bank_) return forward(gelu(h), residual);
  return gelu_linear(h, weight->tensor(), bias ? bias->tensor() : Tensor(), residual);
}

std::array<Tensor, 3> Linear::forward_qkv(Linear& q, Linear& k, Linear& v, const Tensor& x) {
  if (!q.lora_.rank || !k.lora_.rank || !v.lora_.rank)
    return {q.forward(x), k.forward(x), v.forward(x)};
  Tensor h = lora_down(x, {q.lora_.a->tensor(), k.lora_.a->tensor(), v.lora_.a->tensor()});
  std::array<Tensor, 3> out;
  int64_t off = 0;
  Linear* ls[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    Linear& l = *ls[i];
    out[size_t(i)] =
        lora_up_inplace(l.base_forward(x), h, off, l.lora_.b->tensor(), l.lora_.scaling());
    off += l.lora_.rank;
    if (l.bank_) out[size_t(i)] = l.bank_->apply(x, out[size_t(i)]);
  }
  return out;
}

void Linear::set_base_trainable(bool on) {
  if (weight) weight->set_trainable(on);
  if (bias) bias->set_trainable(on);
}

void Linear::quantize(const QuantSpec& spec) {
  if (qweight_) throw std::logic_error("Linear::quantize: the weight is quantized already");
  qweight_ = std::make_unique<QuantizedMatrix>(weight->data(), out_, in_, spec);
  remove_parameter("weight");
  weight = nullptr;
}

void Linear::quantize_from(QuantizedMatrix q) {
  if (qweight_) throw std::logic_error("Linear::quantize_from: the weight is quantized already");
  if (q.rows() != out_ || q.cols() != in_)
    throw std::invalid_argument("quantized weight is (" + std::to_string(q.rows()) + ", " +
                                std::to_string(q.cols()) + "), the layer needs (" +
                                std::to_string(out_) + ", " + std::to_string(in_) + ")");
  qweight_ = std::make_unique<QuantizedMatrix>(std::move(q));
  remove_parameter("weight");
  weight = nullptr;
}

void Linear::dequantize() {
  if (!qweight_) return;
  std::vector<float> w = qweight_->dequantize_all();
  weight = add_parameter("weight", Shape{out_, in_});
  std::copy(w.begin(), w.end(), weight->data());
  weight->set_trainable(lora_.rank ? false : lora_.base_was_trainable);
  qweight_.reset();
}

int64_t Linear::quantized_elements() const {
  return qweight_ ? out_ * in_ : 0;
}

int64_t Linear::weight_bytes() const {
  return qweight_ ? qweight_->bytes() : int64_t(sizeof(float)) * out_ * in_;
}

void Linear::add_lora(int64_t rank, float alpha, Rng& rng) {
  if (lora_.rank) throw std::logic_error("Linear::add_lora: an adapter is attached already");
  if (rank < 1 || rank > std::min(in_, out_))
    throw std::invalid_argument("LoRA rank must be in [1, min(in, out)] = [1, " +
                                std::to_string(std::min(in_, out_)) + "], got " +
                                std::to_string(rank));
  lora_.rank = rank;
  lora_.alpha = alpha;
  lora_.base_was_trainable = weight ? weight->trainable() : true;
  lora_.a = add_parameter("lora_A.weight", Shape{rank, in_}, Init::kCustom);
  lora_.b = add_parameter("lora_B.weight", Shape{out_, rank}, Init::kCustom);
  // Kaiming-normal A (torch.nn.init.kaiming_normal_ defaults: fan_in, gain sqrt 2,
  // so std = sqrt(2 / in)); B = 0, so a fresh adapter leaves the output unchanged.
  lora_.a->init_normal(rng, std::sqrt(2.0f / float(in_)));
  lora_.b->fill(0.0f);
  set_base_trainable(false);
}

void Linear::merge_lora() {
  if (!lora_.rank) return;
  if (qweight_) {
    const bool keep = lora_.base_was_trainable;
    lora_.base_was_trainable = false;
    dequantize();
    lora_.base_was_trainable = keep;
  }
  // W (out, in) += s · B (out, r) · A (r, in)
  gemm(false, false, out_, in_, lora_.rank, lora_.scaling(), lora_.b->data(), lora_.rank,
       lora_.a->data(), in_, 1.0f, weight->data(), in_);
  remove_lora();
}

void Linear::remove_lora() {
  if (!lora_.rank) return;
  remove_parameter("lora_A.weight");
  remove_parameter("lora_B.weight");
  const bool restore = lora_.base_was_trainable;
  lora_ = LoraAdapter{};
  set_base_trainable(restore);
}

}  // namespace bl
