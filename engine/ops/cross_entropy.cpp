// Cross-entropy over rows of logits. The row kernels (log-sum-exp forward,
// softmax-minus-one-hot backward) are one source for every vector ISA
// (simd/targets.h), dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/cross_entropy.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/check.h"
#include "ops/cross_entropy.h"
#include "simd/isa.h"
#include "simd/rows-inl.h"
#include "simd/vexp-inl.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {
using D = hn::ScalableTag<float>;
constexpr int64_t kN = HWY_LANES(float);

// sum of exp(x[j] + c), j < n.
HWY_INLINE float sum_exp(const float* x, int64_t n, float c) {
  const D d;
  const auto vc = hn::Set(d, c);
  auto acc = hn::Zero(d);
  int64_t j = 0;
  for (; j + kN <= n; j += kN) acc = hn::Add(acc, ExpOrZero(d, hn::Add(hn::LoadU(d, x + j), vc)));
  float s = hn::GetLane(hn::SumOfLanes(d, acc));
  const hn::CappedTag<float, 1> d1;
  for (; j < n; ++j) s += hn::GetLane(ExpOrZero(d1, hn::Set(d1, x[j] + c)));
  return s;
}
}  // namespace

// lse[r] of every row with a target (>= 0), and per chunk the sum of
// lse - logit[target] in double.
void CeForward(const float* x, const int32_t* tg, int64_t rows, int64_t v, int64_t nc, float* lse,
               double* part) {
  parallel_for(nc, [&](int64_t c) HWY_ATTR {
    const int64_t r0 = c * rows / nc, r1 = (c + 1) * rows / nc;
    double acc = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      if (tg[r] < 0) continue;
      const float* xr = x + r * v;
      const float m = RowMax(xr, v);
      const float l = m + std::log(sum_exp(xr, v, -m));
      lse[r] = l;
      acc += double(l) - double(xr[tg[r]]);
    }
    part[c] = acc;
  });
}

// dlogits += (softmax - onehot) * scale on rows with a target.
void CeBackward(const float* x, const int32_t* tg, const float* lse, int64_t rows, int64_t v,
                float scale, float* dx) {
  parallel_for(
      rows,
      [&](int64_t r) HWY_ATTR {
        const int32_t t = tg[r];
        if (t < 0) return;
        const D d;
        const float* xr = x + r * v;
        float* dr = dx + r * v;
        const auto nl = hn::Set(d, -lse[r]), vs = hn::Set(d, scale);
        int64_t j = 0;
        for (; j + kN <= v; j += kN)
          hn::StoreU(
              hn::MulAdd(ExpOrZero(d, hn::Add(hn::LoadU(d, xr + j), nl)), vs, hn::LoadU(d, dr + j)),
              d, dr + j);
        const hn::CappedTag<float, 1> d1;
        for (; j < v; ++j) dr[j] += hn::GetLane(ExpOrZero(d1, hn::Set(d1, xr[j] - lse[r]))) * scale;
        dr[t] -= scale;
      },
      std::max<int64_t>(1, 8192 / v));
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

namespace {

HWY_EXPORT(CeForward);
HWY_EXPORT(CeBackward);

}  // namespace

int32_t* arena_targets(const Tokens& targets, int64_t rows, int64_t v, const char* op,
                       const Shape* logits_shape, int64_t* counted) {
  int32_t* tg = current_graph().alloc_as<int32_t>(std::max<int64_t>(rows, 1));
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = targets.data[r];
    if (t >= v)
      op_check(false, op,
               "target " + std::to_string(t) + " at index " + std::to_string(r) +
                   " is out of range for vocab size V = " + std::to_string(v) +
                   (logits_shape ? " (logits " + logits_shape->str() + ")" : std::string()));
    tg[r] = t;
    count += t >= 0;
  }
  *counted = count;
  return tg;
}

int64_t loss_chunks(int64_t rows, int64_t v) {
  constexpr int64_t kMaxChunks = 64;
  const int64_t per = std::max<int64_t>(1, 8192 / std::max<int64_t>(v, 1));
  return std::clamp<int64_t>(rows / per, 1, kMaxChunks);
}

Tensor cross_entropy(const Tensor& logits, const Tokens& targets) {
  op_check(logits.defined() && logits.rank() >= 1, "cross_entropy", "logits must be at least 1-D");
  const int64_t rows = logits.rows(), v = logits.cols();
  op_check(targets.numel() == rows && (targets.data || rows == 0), "cross_entropy",
           "targets " + targets.shape.str() + " do not match logits " + logits.shape().str() +
               " (need one target per row)");
  op_check(v > 0, "cross_entropy", "vocab size (last dim of logits) must be > 0");
  Graph& g = current_graph();
  Tensor loss = g.empty(Shape{1}, g.needs_grad({logits}));

  int64_t count = 0;
  const int32_t* tg = arena_targets(targets, rows, v, "cross_entropy", &logits.shape(), &count);

  float* lse = g.alloc(std::max<int64_t>(rows, 1));
  const int64_t nc = loss_chunks(rows, v);
  double* part = g.alloc_as<double>(nc);
  BL_DISPATCH(CeForward)(logits.data(), tg, rows, v, nc, lse, part);
  double total = 0.0;
  for (int64_t c = 0; c < nc; ++c) total += part[c];
  loss.data()[0] = count > 0 ? float(total / double(count)) : 0.0f;

  if (loss.requires_grad() && count > 0) {
    g.on_backward([=] {
      const float* dy = loss.grad();
      if (!dy) return;
      float* dx = current_graph().grad(logits);
      const float scale = float(double(dy[0]) / double(count));
      // dlogits = (softmax - onehot) * dy / count on non-ignored rows.
      BL_DISPATCH(CeBackward)(logits.data(), tg, lse, rows, v, scale, dx);
    });
  }
  return loss;
}

Tensor sequence_logprob(const Tensor& logits, const Tokens& targets) {
  op_check(logits.defined() && logits.rank() == 3, "sequence_logprob",
           "logits must be (N, T, V), got " +
               (logits.defined() ? logits.shape().str() : std::string("(none)")));
  const int64_t n = logits.shape()[0], t = logits.shape()[1], v = logits.shape()[2];
  op_check(targets.numel() == n * t && (targets.data || n * t == 0), "sequence_logprob",
           "targets " + targets.shape.str() + " do not match logits " + logits.shape().str() +
               " (need one target per position)");
  op_check(v > 0, "sequence_logprob", "vocab size (last dim of logits) must be > 0");
  Graph& g = current_graph();
  Tensor out = g.empty(Shape{n}, g.needs_grad({logits}));
  if (n == 0) return out;
  int64_t count = 0;
  const int32_t* tg = arena_targets(targets, n * t, v, "sequence_logprob", &logits.shape(), &count);
  float* lse = g.alloc(std::max<int64_t>(n * t, 1));
  // One chunk per sequence: CeForward's chunk c is rows [c*T, (c+1)*T), and
  // its sum of lse - logit[target] is the sequence's negative log-probability.
  double* part = g.alloc_as<double>(n);
  BL_DISPATCH(CeForward)(logits.data(), tg, n * t, v, n, lse, part);
  for (int64_t i = 0; i < n; ++i) out.data()[i] = float(-part[i]);

  if (out.requires_grad()) {
    g.on_backward([=] {
      const float* dy = out.grad();
      if (!dy) return;
      float* dx = current_graph().grad(logits);
      // d logp_n / d logits[n, t] = onehot - softmax: CE's backward scaled by -dy[n].
      for (int64_t i = 0; i < n; ++i)
        if (dy[i] != 0.0f) BL_DISPATCH(CeBackward)
      (logits.data() + i * t * v, tg + i * t, lse + i * t, t, v, -dy[i], dx + i * t * v);
    });
  }
  return out;
}

Tensor token_logprob(const Tensor& logits, const Tokens& targets) {
  op_check(logits.defined() && logits.rank() >= 1, "token_logprob", "logits must be at least 1-D");
  const int64_t rows = logits.rows(), v = logits.cols();
  op_check(targets.numel() == rows && (targets.data || rows == 0), "token_logprob",
           "targets " + targets.shape.str() + " do not match logits " + logits.shape().str() +
               " (need one target per row)");
  op_check(v > 0, "token_logprob", "vocab size (last dim of logits) must be > 0");
  Graph& g = current_graph();
  Shape out_shape = logits.shape();
  out_shape.rank -= 1;
  if (out_shape.rank == 0) out_shape = Shape{1};
  Tensor out = g.empty(out_shape, g.needs_grad({logits}));
  if (rows == 0) return out;
  int64_t count = 0;
  const int32_t* tg = arena_targets(targets, rows, v, "token_logprob", &logits.shape(), &count);
  float* lse = g.alloc(rows);
  // One chunk per row: chunk r's sum is lse - logit[target] of row r alone.
  double* part = g.alloc_as<double>(rows);
  BL_DISPATCH(CeForward)(logits.data(), tg, rows, v, rows, lse, part);
  for (int64_t r = 0; r < rows; ++r) out.data()[r] = tg[r] < 0 ? 0.0f : float(-part[r]);

  if (out.requires_grad()) {
    g.on_backward([=] {
      const float* dy = out.grad();
      if (!dy) return;
      float* dx = current_graph().grad(logits);
      // d logp_r / d logits[r] = onehot - softmax: CE's backward for the row, scaled by -dy[r].
      for (int64_t r = 0; r < rows; ++r)
        if (tg[r] >= 0 && dy[r] != 0.0f)
          BL_DISPATCH(CeBackward)(logits.data() + r * v, tg + r, lse + r, 1, v, -dy[r], dx + r * v);
    });
  }
  return out;
}

}  // namespace bl
#endif  // HWY_ONCE
