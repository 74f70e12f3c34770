#include "lora/lora_ops.h"

#include <cstring>
#include <string>

#include "ops/check.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"

namespace bl {

Tensor lora_down(const Tensor& x, const std::vector<Tensor>& as) {
  op_check(!as.empty(), "lora_down", "no adapter matrices");
  const int64_t in = x.cols(), n = x.rows();
  int64_t total = 0;
  for (const Tensor& a : as) {
    op_check(a.rank() == 2 && a.dim(1) == in, "lora_down",
             "A " + a.shape().str() + " does not fit input " + x.shape().str());
    total += a.dim(0);
  }
  Graph& g = current_graph();
  bool need = false;
  for (const Tensor& a : as) need = need || g.needs_grad({a});
  need = need || g.needs_grad({x});
  // Stack the A's so the down projection is a single GEMM.
  const int k = int(as.size());
  const float* acat = as[0].data();
  if (k > 1) {
    float* buf = g.alloc(total * in);
    int64_t row = 0;
    for (const Tensor& a : as) {
      std::memcpy(buf + row * in, a.data(), sizeof(float) * size_t(a.numel()));
      row += a.dim(0);
    }
    acat = buf;
  }
  Shape hs = x.shape();
  hs[-1] = total;
  Tensor h = g.empty(hs, need);
  gemm(false, true, n, total, in, 1.0f, x.data(), in, acat, in, 0.0f, h.data(), total);
  if (need) {
    Tensor* saved = g.alloc_as<Tensor>(k);
    for (int i = 0; i < k; ++i) saved[i] = as[size_t(i)];
    g.on_backward([=] {
      const float* dh = h.grad();
      if (!dh) return;
      Graph& gg = current_graph();
      if (x.requires_grad())  // dx += dh · Acat
        gemm(false, false, n, in, total, 1.0f, dh, total, acat, in, 1.0f, gg.grad(x), in);
      int64_t off = 0;
      for (int i = 0; i < k; ++i) {
        const Tensor& a = saved[i];
        const int64_t r = a.dim(0);
        if (a.requires_grad())  // dA_i += dh[:, off:off+r]ᵀ · x
          gemm(true, false, r, in, n, 1.0f, dh + off, total, x.data(), in, 1.0f, gg.grad(a), in);
        off += r;
      }
    });
  }
  return h;
}

namespace {
Tensor lora_up_impl(const Tensor& base, const Tensor& h, int64_t off, const Tensor& b, float s,
                    bool in_place) {
  const int64_t out = base.cols(), n = base.rows(), H = h.cols();
  op_check(b.rank() == 2 && b.dim(0) == out, "lora_up",
           "B " + b.shape().str() + " does not fit output " + base.shape().str());
  const int64_t r = b.dim(1);
  op_check(h.rows() == n && off >= 0 && off + r <= H, "lora_up",
           "h " + h.shape().str() + " has no columns [" + std::to_string(off) + ", " +
               std::to_string(off + r) + ") for " + std::to_string(n) + " rows");
  Graph& g = current_graph();
  const bool rg = g.needs_grad({base, h, b});
  Tensor y;
  if (in_place) {
    // A view of base: the gradient of y is the gradient of base (one buffer).
    const bool base_rg = g.needs_grad({base});
    y = g.wrap(base.data(), base.shape(), base_rg ? g.grad(base) : nullptr, rg);
  } else {
    y = g.empty(base.shape(), rg);
    std::memcpy(y.data(), base.data(), sizeof(float) * size_t(base.numel()));
  }
  gemm(false, true, n, out, r, s, h.data() + off, H, b.data(), r, 1.0f, y.data(), out);
  if (rg) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      if (!in_place && base.requires_grad()) {
        float* db = gg.grad(base);
        for (int64_t i = 0; i < n * out; ++i) db[i] += dy[i];
      }
      if (h.requires_grad())  // dh[:, off:off+r] += s · dy · B
        gemm(false, false, n, r, out, s, dy, out, b.data(), r, 1.0f, gg.grad(h) + off, H);
      if (b.requires_grad())  // dB += s · dyᵀ · h_slice
        gemm(true, false, out, r, n, s, dy, out, h.data() + off, H, 1.0f, gg.grad(b), r);
    });
  }
  return y;
}
}  // namespace

Tensor lora_up(const Tensor& base, const Tensor& h, int64_t off, const Tensor& b, float s) {
  return lora_up_impl(base, h, off, b, s, false);
}

Tensor lora_up_inplace(const Tensor& base, const Tensor& h, int64_t off, const Tensor& b, float s) {
  return lora_up_impl(base, h, off, b, s, true);
}

}  // namespace bl
