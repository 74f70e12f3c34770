#include "ops/norm.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/check.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

namespace bl {

namespace {

// Rows per parallel_for worker so a thread gets at least ~16K elements.
int64_t min_rows_per_thread(int64_t d) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1));
}

// dweight/dbias sum over rows. Rows are split into a fixed number of chunks
// (independent of the thread count, so results are bitwise reproducible);
// each chunk sums into its own arena partial, then the partials are reduced.
constexpr int64_t kMaxChunks = 16;
int64_t n_chunks(int64_t rows) {
  return std::clamp<int64_t>(rows / 64, 1, kMaxChunks);
}

void check_param(const Tensor& p, int64_t d, const char* op, const char* what, const Tensor& x) {
  op_check(!p.defined() || p.numel() == d, op,
           std::string(what) + " " + (p.defined() ? p.shape().str() : "") + " must have " +
               std::to_string(d) + " elements to match input " + x.shape().str());
}

// Sums nc partial rows of length d into out (+=).
void reduce_partials(const float* part, int64_t nc, int64_t d, float* out) {
  for (int64_t c = 0; c < nc; ++c) {
    const float* p = part + c * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) out[j] += p[j];
  }
}

template <bool kHasW, bool kHasB>
void layer_norm_fwd(const float* x, const float* w, const float* b, float* y, float* save_mean,
                    float* save_rstd, int64_t rows, int64_t d, float eps) {
  const float inv_d = 1.0f / float(d);
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* xr = x + r * d;
        float* yr = y + r * d;
        // Eigen's reductions: vector partial sums, then a shuffle tree (the
        // OpenMP simd reductions finished through memory, a long serial tail).
        const Eigen::Map<const Eigen::ArrayXf> xa(xr, d);
        const float mean = xa.sum() * inv_d;
        // Second sweep over the (L1-resident) row: exact variance, no cancellation.
        const float v = (xa - mean).square().sum();
        const float rstd = 1.0f / std::sqrt(v * inv_d + eps);
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) {
          float o = (xr[j] - mean) * rstd;
          if constexpr (kHasW) o *= w[j];
          if constexpr (kHasB) o += b[j];
          yr[j] = o;
        }
        if (save_mean) {
          save_mean[r] = mean;
          save_rstd[r] = rstd;
        }
      },
      min_rows_per_thread(d));
}

template <bool kHasW>
void rms_norm_fwd(const float* x, const float* w, float* y, float* save_rstd, int64_t rows,
                  int64_t d, float eps) {
  const float inv_d = 1.0f / float(d);
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* xr = x + r * d;
        float* yr = y + r * d;
        const float ss = Eigen::Map<const Eigen::ArrayXf>(xr, d).square().sum();
        const float rstd = 1.0f / std::sqrt(ss * inv_d + eps);
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) {
          float o = xr[j] * rstd;
          if constexpr (kHasW) o *= w[j];
          yr[j] = o;
        }
        if (save_rstd) save_rstd[r] = rstd;
      },
      min_rows_per_thread(d));
}

// One row's sg = sum(g) and sgx = sum(g * xhat), g = dy * w (or dy): vector
// partial sums in one pass, then Eigen's shuffle-tree finish (an OpenMP simd
// reduction finished through memory, a long serial tail per row).
template <bool kHasW>
inline void row_grad_sums(const float* xr, const float* dyr, const float* w, float mu, float rs,
                          int64_t d, float* sg_out, float* sgx_out) {
  using namespace Eigen::internal;
  using Packet = packet_traits<float>::type;
  constexpr int64_t kLanes = packet_traits<float>::size;
  Packet ag = pset1<Packet>(0.0f), agx = pset1<Packet>(0.0f);
  const Packet pmu = pset1<Packet>(mu), prs = pset1<Packet>(rs);
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes) {
    Packet g = ploadu<Packet>(dyr + j);
    if constexpr (kHasW) g = pmul(g, ploadu<Packet>(w + j));
    ag = padd(ag, g);
    agx = pmadd(g, pmul(psub(ploadu<Packet>(xr + j), pmu), prs), agx);
  }
  float sg = predux(ag), sgx = predux(agx);
  for (; j < d; ++j) {
    const float g = kHasW ? dyr[j] * w[j] : dyr[j];
    sg += g;
    sgx += g * ((xr[j] - mu) * rs);
  }
  *sg_out = sg;
  *sgx_out = sgx;
}

// Backward of both norms. For layer norm xhat = (x - mean) * rstd; for RMS
// norm mean is null and xhat = x * rstd. With g = dy * w:
//   layer: dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   rms:   dx = rstd * (g - xhat * mean(g * xhat))
// dw += sum_rows dy * xhat, db += sum_rows dy (per-chunk partials).
void norm_bwd(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
              float* dx, float* pw, float* pb, int64_t rows, int64_t d, int64_t nc) {
  const float inv_d = 1.0f / float(d);
  parallel_for(nc, [&](int64_t c) {
    float* cw = pw ? pw + c * d : nullptr;
    float* cb = pb ? pb + c * d : nullptr;
    if (cw) std::memset(cw, 0, sizeof(float) * size_t(d));
    if (cb) std::memset(cb, 0, sizeof(float) * size_t(d));
    const int64_t r0 = c * rows / nc, r1 = (c + 1) * rows / nc;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      const float* dyr = dy + r * d;
      const float mu = mean ? mean[r] : 0.0f;
      const float rs = rstd[r];
      if (cw) {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) cw[j] += dyr[j] * ((xr[j] - mu) * rs);
      }
      if (cb) {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) cb[j] += dyr[j];
      }
      if (!dx) continue;
      float sg, sgx;
      if (w)
        row_grad_sums<true>(xr, dyr, w, mu, rs, d, &sg, &sgx);
      else
        row_grad_sums<false>(xr, dyr, w, mu, rs, d, &sg, &sgx);
      const float mg = mean ? sg * inv_d : 0.0f;
      const float mgx = sgx * inv_d;
      float* dxr = dx + r * d;
      if (w) {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j)
          dxr[j] += rs * (dyr[j] * w[j] - mg - (xr[j] - mu) * rs * mgx);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) dxr[j] += rs * (dyr[j] - mg - (xr[j] - mu) * rs * mgx);
      }
    }
  });
}

// Shared backward closure body: grads are fetched before the parallel loop.
void run_norm_backward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                       const float* mean, const float* rstd) {
  const float* dy = y.grad();
  if (!dy) return;
  Graph& g = current_graph();
  const int64_t rows = x.rows(), d = x.cols();
  const int64_t nc = n_chunks(rows);
  float* dx = g.grad_if_required(x);
  const bool need_w = w.defined() && w.requires_grad();
  const bool need_b = b.defined() && b.requires_grad();
  float* dw = need_w ? g.grad(w) : nullptr;
  float* db = need_b ? g.grad(b) : nullptr;
  float* pw = need_w ? g.alloc(nc * d) : nullptr;
  float* pb = need_b ? g.alloc(nc * d) : nullptr;
  norm_bwd(x.data(), w.defined() ? w.data() : nullptr, mean, rstd, dy, dx, pw, pb, rows, d, nc);
  if (dw) reduce_partials(pw, nc, d, dw);
  if (db) reduce_partials(pb, nc, d, db);
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  op_check(x.defined() && x.rank() >= 1, "layer_norm", "input must be at least 1-D");
  const int64_t rows = x.rows(), d = x.cols();
  check_param(weight, d, "layer_norm", "weight", x);
  check_param(bias, d, "layer_norm", "bias", x);
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x, weight, bias}));
  if (x.numel() == 0) return y;
  float* mean = y.requires_grad() ? g.alloc(rows) : nullptr;
  float* rstd = y.requires_grad() ? g.alloc(rows) : nullptr;
  const float* w = weight.defined() ? weight.data() : nullptr;
  const float* b = bias.defined() ? bias.data() : nullptr;
  if (w && b)
    layer_norm_fwd<true, true>(x.data(), w, b, y.data(), mean, rstd, rows, d, eps);
  else if (w)
    layer_norm_fwd<true, false>(x.data(), w, b, y.data(), mean, rstd, rows, d, eps);
  else if (b)
    layer_norm_fwd<false, true>(x.data(), w, b, y.data(), mean, rstd, rows, d, eps);
  else
    layer_norm_fwd<false, false>(x.data(), w, b, y.data(), mean, rstd, rows, d, eps);
  if (y.requires_grad()) g.on_backward([=] { run_norm_backward(x, weight, bias, y, mean, rstd); });
  return y;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  op_check(x.defined() && x.rank() >= 1, "rms_norm", "input must be at least 1-D");
  const int64_t rows = x.rows(), d = x.cols();
  check_param(weight, d, "rms_norm", "weight", x);
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x, weight}));
  if (x.numel() == 0) return y;
  float* rstd = y.requires_grad() ? g.alloc(rows) : nullptr;
  if (weight.defined())
    rms_norm_fwd<true>(x.data(), weight.data(), y.data(), rstd, rows, d, eps);
  else
    rms_norm_fwd<false>(x.data(), nullptr, y.data(), rstd, rows, d, eps);
  if (y.requires_grad())
    g.on_backward([=] { run_norm_backward(x, weight, Tensor(), y, nullptr, rstd); });
  return y;
}

}  // namespace bl
