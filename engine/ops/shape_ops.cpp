#include "ops/shape_ops.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

constexpr int64_t kChunk = 1 << 14;

// Grain (in rows of `row` floats) that gives each parallel task ~kChunk floats.
int64_t grain(int64_t row) {
  return std::max<int64_t>(1, kChunk / std::max<int64_t>(row, 1));
}

int norm_dim(int d, int rank, const char* op) {
  const int nd = d < 0 ? d + rank : d;
  if (nd < 0 || nd >= rank)
    op_fail(op, "dim " + std::to_string(d) + " out of range for rank " + std::to_string(rank));
  return nd;
}

// Splits shape s around dim into (outer, size of dim, inner).
void split3(const Shape& s, int dim, int64_t& outer, int64_t& mid, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s.dims[i];
  for (int i = dim + 1; i < s.rank; ++i) inner *= s.dims[i];
  mid = s.dims[dim];
}

// Walks the output of a permutation (padded to rank 4: dims od, with the
// input's element stride for each output dim in is) and calls
// f(out_offset, in_offset, count, in_stride) once per output row. Rows are
// disjoint in both layouts, so parallel rows never write the same element.
template <class F>
void for_each_permuted_row(const int64_t* od, const int64_t* is, F&& f) {
  const int64_t rows = od[0] * od[1] * od[2], inner = od[3];
  parallel_for(
      rows,
      [&](int64_t r) {
        const int64_t i2 = r % od[2], t = r / od[2], i1 = t % od[1], i0 = t / od[1];
        f(r * inner, i0 * is[0] + i1 * is[1] + i2 * is[2], inner, is[3]);
      },
      grain(inner));
}

}  // namespace

Tensor reshape(const Tensor& a, const Shape& s) {
  if (!a.defined()) op_fail("reshape", "undefined operand");
  if (s.numel() != a.numel())
    op_fail("reshape",
            "cannot reshape " + a.shape().str() + " to " + s.str() + " (element counts differ)");
  Graph& g = current_graph();
  const bool rg = g.needs_grad({a});
  // A view: the output shares the data and, when grads flow, the very
  // gradient buffer of a, so whatever accumulates into it reaches a with no
  // backward closure. The buffer must exist now for the pointer to be shared.
  return g.wrap(a.data(), s, rg ? g.grad(a) : nullptr, rg);
}

Tensor transpose(const Tensor& a, int d0, int d1) {
  if (!a.defined()) op_fail("transpose", "undefined operand");
  const int rank = a.rank();
  if (rank < 1) op_fail("transpose", "needs at least a 1-D tensor");
  d0 = norm_dim(d0, rank, "transpose");
  d1 = norm_dim(d1, rank, "transpose");
  Graph& g = current_graph();
  Shape os = a.shape();
  std::swap(os.dims[d0], os.dims[d1]);
  Tensor y = g.empty(os, g.needs_grad({a}));

  // Input strides, then permuted into output order and padded to rank 4.
  int64_t in_stride[kMaxRank];
  int64_t st = 1;
  for (int i = rank - 1; i >= 0; --i) {
    in_stride[i] = st;
    st *= a.shape().dims[i];
  }
  std::swap(in_stride[d0], in_stride[d1]);
  const int off = kMaxRank - rank;
  struct Layout {
    int64_t od[kMaxRank], is[kMaxRank];
  } L;
  for (int i = 0; i < kMaxRank; ++i) {
    L.od[i] = i < off ? 1 : os.dims[i - off];
    L.is[i] = i < off ? 0 : in_stride[i - off];
  }
  const float* src = a.data();
  float* dst = y.data();
  for_each_permuted_row(L.od, L.is, [&](int64_t o, int64_t in, int64_t n, int64_t s) {
    if (s == 1)
      std::memcpy(dst + o, src + in, sizeof(float) * size_t(n));
    else
      for (int64_t j = 0; j < n; ++j) dst[o + j] = src[in + j * s];
  });
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* da = current_graph().grad(a);
      for_each_permuted_row(L.od, L.is, [&](int64_t o, int64_t in, int64_t n, int64_t s) {
        for (int64_t j = 0; j < n; ++j) da[in + j * s] += dy[o + j];
      });
    });
  }
  return y;
}

Tensor slice(const Tensor& a, int dim, int64_t start, int64_t end) {
  if (!a.defined()) op_fail("slice", "undefined operand");
  if (a.rank() < 1) op_fail("slice", "needs at least a 1-D tensor");
  dim = norm_dim(dim, a.rank(), "slice");
  int64_t outer, mid, inner;
  split3(a.shape(), dim, outer, mid, inner);
  if (start < 0 || start > end || end > mid)
    op_fail("slice", "range [" + std::to_string(start) + ", " + std::to_string(end) +
                         ") invalid for dim " + std::to_string(dim) + " of " + a.shape().str());
  Graph& g = current_graph();
  Shape os = a.shape();
  os.dims[dim] = end - start;
  Tensor y = g.empty(os, g.needs_grad({a}));
  const int64_t len = (end - start) * inner;  // contiguous floats per outer index
  const float* src = a.data();
  float* dst = y.data();
  parallel_for(
      outer,
      [&](int64_t o) {
        std::memcpy(dst + o * len, src + (o * mid + start) * inner, sizeof(float) * size_t(len));
      },
      grain(len));
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      float* da = current_graph().grad(a);
      parallel_for(
          outer,
          [&](int64_t o) {
            const float* __restrict s = dy + o * len;
            float* __restrict d = da + (o * mid + start) * inner;
            for (int64_t k = 0; k < len; ++k) d[k] += s[k];
          },
          grain(len));
    });
  }
  return y;
}

Tensor concat(const std::vector<Tensor>& parts, int dim) {
  if (parts.empty()) op_fail("concat", "no tensors to concatenate");
  for (const Tensor& t : parts)
    if (!t.defined()) op_fail("concat", "undefined operand");
  const Shape& s0 = parts[0].shape();
  if (s0.rank < 1) op_fail("concat", "needs at least 1-D tensors");
  dim = norm_dim(dim, s0.rank, "concat");
  Graph& g = current_graph();
  const int64_t np = int64_t(parts.size());
  // The closure may not own a std::vector: keep parts and offsets in the arena.
  Tensor* ps = g.alloc_as<Tensor>(np);
  int64_t* off = g.alloc_as<int64_t>(np + 1);
  off[0] = 0;
  bool rg = false;
  for (int64_t i = 0; i < np; ++i) {
    const Shape& si = parts[size_t(i)].shape();
    bool ok = si.rank == s0.rank;
    for (int k = 0; ok && k < s0.rank; ++k) ok = k == dim || si.dims[k] == s0.dims[k];
    if (!ok)
      op_fail("concat", "part " + std::to_string(i) + " has shape " + si.str() + ", expected " +
                            s0.str() + " except along dim " + std::to_string(dim));
    new (ps + i) Tensor(parts[size_t(i)]);
    off[i + 1] = off[i] + si.dims[dim];
    rg = rg || parts[size_t(i)].requires_grad();
  }
  rg = rg && g.grad_enabled();
  int64_t outer, mid0, inner;
  split3(s0, dim, outer, mid0, inner);
  const int64_t total = off[np];
  Shape os = s0;
  os.dims[dim] = total;
  Tensor y = g.empty(os, rg);
  float* dst = y.data();
  parallel_for(
      outer,
      [&](int64_t o) {
        for (int64_t i = 0; i < np; ++i) {
          const int64_t len = (off[i + 1] - off[i]) * inner;
          std::memcpy(dst + (o * total + off[i]) * inner, ps[i].data() + o * len,
                      sizeof(float) * size_t(len));
        }
      },
      grain(total * inner));
  if (rg) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      // Fetch the grad buffers before the parallel loop (the graph is not thread-safe).
      float** dp = gg.alloc_as<float*>(np);
      for (int64_t i = 0; i < np; ++i) dp[i] = gg.grad_if_required(ps[i]);
      parallel_for(
          outer,
          [&](int64_t o) {
            for (int64_t i = 0; i < np; ++i) {
              if (!dp[i]) continue;
              const int64_t len = (off[i + 1] - off[i]) * inner;
              const float* __restrict s = dy + (o * total + off[i]) * inner;
              float* __restrict d = dp[i] + o * len;
              for (int64_t k = 0; k < len; ++k) d[k] += s[k];
            }
          },
          grain(total * inner));
    });
  }
  return y;
}

}  // namespace bl
