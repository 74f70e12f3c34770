// Causal depthwise 1-D convolution over time (the "short convolution" of
// DeltaNet / Mamba): every channel has its own kernel of K taps over the
// current and K - 1 previous positions.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// x (B, T, C), w (C, K) (torch's depthwise Conv1d weight without its middle 1)
/// -> y (B, T, C) with y[b, t, c] = Σ_j w[c, j] * x[b, t - (K - 1) + j, c].
/// Positions before 0 read `prefix` (B, K - 1, C): the last K - 1 inputs of an
/// earlier call (incremental decoding; a constant, no gradient), or zeros when
/// prefix is null. Backward to x and w.
Tensor causal_conv1d(const Tensor& x, const Tensor& w, const float* prefix = nullptr);

/// Advances a decoding tail: tail (B, K - 1, C) becomes the last K - 1 rows of
/// [tail; x] for x (B, T, C), any T >= 0.
void causal_conv1d_advance(float* tail, const Tensor& x, int64_t kernel_size);

}  // namespace bl
