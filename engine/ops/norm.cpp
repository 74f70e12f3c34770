// Layer and RMS norm, forward and backward. One source for every vector ISA:
// Highway compiles the kernels below once per target (simd/targets.h); the
// ops dispatch to the CPU's best (or BLOCKLAB_ISA's).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/norm.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/check.h"
#include "ops/norm.h"
#include "simd/isa.h"
#include "simd/rows-inl.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

#ifndef BL_OPS_NORM_SHARED_
#define BL_OPS_NORM_SHARED_
namespace bl::norm_detail {

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

}  // namespace bl::norm_detail
#endif  // BL_OPS_NORM_SHARED_

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {

using namespace bl::norm_detail;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
constexpr int64_t kN = HWY_LANES(float);

// sum((x[j] - c)^2) over a row.
inline float row_sq_dev(const float* x, int64_t d, float c) {
  const D dd;
  const V vc = hn::Set(dd, c);
  V a0 = hn::Zero(dd), a1 = hn::Zero(dd);
  int64_t j = 0;
  for (; j + 2 * kN <= d; j += 2 * kN) {
    const V x0 = hn::Sub(hn::LoadU(dd, x + j), vc), x1 = hn::Sub(hn::LoadU(dd, x + j + kN), vc);
    a0 = hn::MulAdd(x0, x0, a0);
    a1 = hn::MulAdd(x1, x1, a1);
  }
  for (; j + kN <= d; j += kN) {
    const V x0 = hn::Sub(hn::LoadU(dd, x + j), vc);
    a0 = hn::MulAdd(x0, x0, a0);
  }
  float s = hn::GetLane(hn::SumOfLanes(dd, hn::Add(a0, a1)));
  for (; j < d; ++j) s += (x[j] - c) * (x[j] - c);
  return s;
}

// One row's sg = sum(g) and sgx = sum(g * xhat), g = dy * w (or dy): vector
// partial sums in one pass, then one horizontal reduction each.
template <bool kHasW>
inline void row_grad_sums(const float* xr, const float* dyr, const float* w, float mu, float rs,
                          int64_t d, float* sg_out, float* sgx_out) {
  const D dd;
  V ag = hn::Zero(dd), agx = hn::Zero(dd);
  const V pmu = hn::Set(dd, mu), prs = hn::Set(dd, rs);
  int64_t j = 0;
  for (; j + kN <= d; j += kN) {
    V g = hn::LoadU(dd, dyr + j);
    if constexpr (kHasW) g = hn::Mul(g, hn::LoadU(dd, w + j));
    ag = hn::Add(ag, g);
    agx = hn::MulAdd(g, hn::Mul(hn::Sub(hn::LoadU(dd, xr + j), pmu), prs), agx);
  }
  float sg = hn::GetLane(hn::SumOfLanes(dd, ag)), sgx = hn::GetLane(hn::SumOfLanes(dd, agx));
  for (; j < d; ++j) {
    const float g = kHasW ? dyr[j] * w[j] : dyr[j];
    sg += g;
    sgx += g * ((xr[j] - mu) * rs);
  }
  *sg_out = sg;
  *sgx_out = sgx;
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
      [&](int64_t r) HWY_ATTR {
        const float* xr = x + r * d;
        float* yr = y + r * d;
        // Vector partial sums, then one horizontal reduction (OpenMP simd
        // reductions finished through memory, a long serial tail).
        const float mean = RowSum(xr, d) * inv_d;
        // Second sweep over the (L1-resident) row: exact variance, no cancellation.
        const float v = row_sq_dev(xr, d, mean);
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
      [&](int64_t r) HWY_ATTR {
        const float* xr = x + r * d;
        float* yr = y + r * d;
        const float ss = row_sq_dev(xr, d, 0.0f);
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

// Backward of both norms. For layer norm xhat = (x - mean) * rstd; for RMS
// norm mean is null and xhat = x * rstd. With g = dy * w:
//   layer: dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   rms:   dx = rstd * (g - xhat * mean(g * xhat))
// dw += sum_rows dy * xhat, db += sum_rows dy (per-chunk partials).
void norm_bwd(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
              float* dx, float* pw, float* pb, int64_t rows, int64_t d, int64_t nc) {
  const float inv_d = 1.0f / float(d);
  parallel_for(nc, [&](int64_t c) HWY_ATTR {
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

}  // namespace

void LayerNormFwd(const float* x, const float* w, const float* b, float* y, float* mean,
                  float* rstd, int64_t rows, int64_t d, float eps) {
  if (w && b)
    layer_norm_fwd<true, true>(x, w, b, y, mean, rstd, rows, d, eps);
  else if (w)
    layer_norm_fwd<true, false>(x, w, b, y, mean, rstd, rows, d, eps);
  else if (b)
    layer_norm_fwd<false, true>(x, w, b, y, mean, rstd, rows, d, eps);
  else
    layer_norm_fwd<false, false>(x, w, b, y, mean, rstd, rows, d, eps);
}

void RmsNormFwd(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t d,
                float eps) {
  if (w)
    rms_norm_fwd<true>(x, w, y, rstd, rows, d, eps);
  else
    rms_norm_fwd<false>(x, nullptr, y, rstd, rows, d, eps);
}

void NormBwd(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
             float* dx, float* pw, float* pb, float* dw, float* db, int64_t rows, int64_t d,
             int64_t nc) {
  norm_bwd(x, w, mean, rstd, dy, dx, pw, pb, rows, d, nc);
  if (dw) reduce_partials(pw, nc, d, dw);
  if (db) reduce_partials(pb, nc, d, db);
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

namespace {

using namespace norm_detail;
HWY_EXPORT(LayerNormFwd);
HWY_EXPORT(RmsNormFwd);
HWY_EXPORT(NormBwd);

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
  BL_DISPATCH(NormBwd)
  (x.data(), w.defined() ? w.data() : nullptr, mean, rstd, dy, dx, pw, pb, dw, db, rows, d, nc);
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
  BL_DISPATCH(LayerNormFwd)(x.data(), w, b, y.data(), mean, rstd, rows, d, eps);
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
  BL_DISPATCH(RmsNormFwd)
  (x.data(), weight.defined() ? weight.data() : nullptr, y.data(), rstd, rows, d, eps);
  if (y.requires_grad())
    g.on_backward([=] { run_norm_backward(x, weight, Tensor(), y, nullptr, rstd); });
  return y;
}

}  // namespace bl
#endif  // HWY_ONCE
