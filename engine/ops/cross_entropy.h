// Fused softmax + negative log-likelihood over the last dimension.
#pragma once

#include "ops/embedding.h"
#include "tensor/tensor.h"

namespace bl {

/// logits (..., V), targets (...) -> mean loss over targets >= 0 (negative ids are
/// ignored), shape (1). Throws "[cross_entropy] ..." on a target >= V.
Tensor cross_entropy(const Tensor& logits, const Tokens& targets);

/// logits (N, T, V), targets (N, T) -> (N): each sequence's summed log-probability
/// of its targets >= 0, sum_t log softmax(logits[n, t])[targets[n, t]] (0 for a
/// sequence with none). The scoring of preference objectives (DPO) and of
/// whole completions. Throws "[sequence_logprob] ..." on mismatched shapes or a
/// target >= V.
Tensor sequence_logprob(const Tensor& logits, const Tokens& targets);

/// logits (..., V), targets (...) -> (...): each position's log-probability of
/// its target, log softmax(logits)[target], and 0 where the target is < 0. The
/// per-token scoring of policy-gradient objectives (GRPO). Throws
/// "[token_logprob] ..." on mismatched shapes or a target >= V.
Tensor token_logprob(const Tensor& logits, const Tokens& targets);

// Shared by the fused loss ops (cross_entropy, distill_kl).

/// Copies `rows` targets into the current graph's arena (a backward must not
/// depend on the caller's buffer: data loaders reuse theirs), checking each is
/// < v ("[op] target T at index R is out of range for vocab size V = v",
/// naming `logits_shape` when given; the message is built only on an error,
/// as this runs every step); *counted = how many are >= 0 (negative ids are padding).
int32_t* arena_targets(const Tokens& targets, int64_t rows, int64_t v, const char* op,
                       const Shape* logits_shape, int64_t* counted);
/// Row chunks of a loss sum, fixed by the shape alone (not the thread count),
/// so the double sum is reproducible bit for bit.
int64_t loss_chunks(int64_t rows, int64_t v);

}  // namespace bl
