#include "core/attention/local_gqa.h"

#include <cstring>

#include "ops/check.h"
#include "tensor/graph.h"

namespace bl {

std::unique_ptr<LayerState> LocalGQA::make_state(int64_t batch, int64_t /*max_len*/) const {
  // Independent of max_len: the cache never grows past the local span.
  auto s = std::make_unique<LocalKVCacheState>();
  s->batch = batch;
  s->capacity = cache_capacity();
  s->width = n_kv_heads_ * head_dim_;
  s->k.resize(batch * s->capacity * s->width);
  s->v.resize(batch * s->capacity * s->width);
  return s;
}

Tensor LocalGQA::attend_cached(const Tensor& q, const Tensor& k, const Tensor& v,
                               AttentionOptions opt, LayerState& state) {
  auto* c = dynamic_cast<LocalKVCacheState*>(&state);
  op_check(c != nullptr && c->capacity == cache_capacity() && c->width == n_kv_heads_ * head_dim_,
           "local_gqa", "decoding state of another component");
  const int64_t B = q.dim(0), T = q.dim(1), W = c->width, L = c->length;
  op_check(B == c->batch, "local_gqa",
           "batch " + std::to_string(B) + " but the cache holds " + std::to_string(c->batch) +
               " sequences");
  // Invariant: the cache holds exactly [first_key(L), L), what the first new query needs
  // (first_key is non-decreasing, so later queries need no older keys).
  const int64_t first = first_key(L);
  op_check(c->rows == L - first, "local_gqa", "cache out of step with its length");

  // Contiguous keys/values of positions [first, L + T): cached rows, then the new ones.
  const int64_t n = c->rows + T;
  Graph& g = current_graph();
  Tensor kc = g.empty(Shape{B, n, W});
  Tensor vc = g.empty(Shape{B, n, W});
  for (int64_t b = 0; b < B; ++b) {
    const size_t old_bytes = sizeof(float) * size_t(c->rows * W);
    const size_t new_bytes = sizeof(float) * size_t(T * W);
    if (old_bytes) {  // (a window of 1 has no cache buffer at all)
      std::memcpy(kc.data() + b * n * W, c->k.data() + b * c->capacity * W, old_bytes);
      std::memcpy(vc.data() + b * n * W, c->v.data() + b * c->capacity * W, old_bytes);
    }
    std::memcpy(kc.data() + (b * n + c->rows) * W, k.data() + b * T * W, new_bytes);
    std::memcpy(vc.data() + (b * n + c->rows) * W, v.data() + b * T * W, new_bytes);
  }
  opt.q_offset = L;
  opt.k_offset = first;
  Tensor y = attention(q, kc, vc, n_heads_, n_kv_heads_, opt);

  // Keep what the next query (at L + T) can see: positions [first_key(L + T), L + T).
  const int64_t keep = L + T - first_key(L + T);
  op_check(keep >= 0 && keep <= c->capacity && keep <= n, "local_gqa", "cache overflow");
  for (int64_t b = 0; keep > 0 && b < B; ++b) {
    const size_t bytes = sizeof(float) * size_t(keep * W);
    std::memcpy(c->k.data() + b * c->capacity * W, kc.data() + (b * n + n - keep) * W, bytes);
    std::memcpy(c->v.data() + b * c->capacity * W, vc.data() + (b * n + n - keep) * W, bytes);
  }
  c->rows = keep;
  c->length = L + T;
  return y;
}

double LocalGQA::mixing_flops_per_token(int64_t seq_len) const {
  // Same convention as GQA (PaLM's 6N + 12·L·T·d): a query is charged every
  // key of its span as if unmasked, so a span covering the sequence costs
  // exactly what full attention does. Q Kᵀ and P V: 2 * 2 * n_heads * head_dim
  // FLOPs per key. Averaged over the positions of a seq_len sequence.
  if (seq_len <= 0) return 0.0;
  double keys = 0;
  for (int64_t p = 0; p < seq_len; ++p) keys += double(charged_keys(p, seq_len));
  return 4.0 * double(n_heads_ * head_dim_) * keys / double(seq_len);
}

}  // namespace bl
