// Kernels of block-sparse attention (sparse_gqa; DeepSeek / NSA style).
// Keys are grouped into blocks of `block` consecutive positions; block j holds
// positions [j * block, (j + 1) * block) and is "complete" for a query at
// position p when (j + 1) * block <= p + 1 (its last token is at or before p).
// Layouts as in ops/attention.h: (B, T, H*D), GQA query head h reads kv head
// h / (Hq / Hkv). Keys of every op start at absolute position 0.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// x (B, T, W) -> (B, T / block, W): the mean of every complete block of rows
/// (a trailing partial block is left out). Rows are summed in order, then scaled.
Tensor block_mean_pool(const Tensor& x, int64_t block);

/// Attention of q (B, Tq, Hq*D), at positions q_offset + i, over compressed
/// blocks kc, vc (B, Nc, Hkv*D): a query sees exactly its complete blocks
/// (none: zero output). If `selected` is not null it receives, per (b, i, kv
/// head), the ids of the select_k complete blocks with the largest attention
/// probability summed over that kv head's query heads (ties: lower id first),
/// in increasing id order, padded with -1 when fewer are complete:
/// (B, Tq, Hkv, select_k) int32. The selection is not differentiated.
Tensor compressed_attention(const Tensor& q, const Tensor& kc, const Tensor& vc, int64_t n_heads,
                            int64_t n_kv_heads, float scale, int64_t block, int64_t q_offset,
                            int64_t select_k, int32_t* selected);

/// Attention of q (B, Tq, Hq*D) over the tokens of its selected blocks of
/// k, v (B, Tk, Hkv*D): `selected` as written by compressed_attention (ids
/// of complete blocks, so every token precedes the query; -1 = unused slot).
/// A query with no selected block gets a zero output.
Tensor selected_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t n_heads,
                          int64_t n_kv_heads, float scale, int64_t block, const int32_t* selected,
                          int64_t select_k);

}  // namespace bl
