// Fused pointwise ops around the Mamba SSD scan, compiled once per ISA
// (simd/targets.h) and dispatched at run time like the scan itself. The B/C
// rotation angles use Highway's vector sin/cos: Eigen's, under the per-target
// attributes, stopped inlining and made the Mamba-3 layer 1.7x slower.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/ssm_ops.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "ops/check.h"
#include "ops/ssm_ops.h"
#include "simd/isa.h"
#include "simd/span_ops.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

namespace {

inline float sigmoid_f(float u) {
  return 1.0f / (1.0f + std::exp(-u));
}
inline float softplus_f(float u) {
  return u > 20.0f ? u : std::log1p(std::exp(u));
}

// Tasks per thread so a parallel region carries at least ~64K flops: tiny
// problems run inline instead of paying a fork/join per call.
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, work_per_task));
}

// out = sigmoid(x) over n floats (vectorised per ISA).
inline void sigmoid_row(const float* x, float* out, int64_t n) {
  span_sigmoid(x, out, n);
}

float* grad_if(const Tensor& t) {
  return t.defined() ? current_graph().grad_if_required(t) : nullptr;
}

// cos and sin of n angles. Highway's sin/cos hold 3 ulp on |a| <= 39000; a
// row with a larger angle (a very long decode) takes the libm path.
void sincos_row(const float* a, float* cs, float* sn, int64_t n) {
  float amax = 0.0f;
  for (int64_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(a[k]));
  int64_t k = 0;
  if (amax <= 39000.0f) {
    const hn::ScalableTag<float> d;
    const int64_t L = int64_t(hn::Lanes(d));
    for (; k + L <= n; k += L) {
      const auto v = hn::LoadU(d, a + k);
      hn::StoreU(hn::Cos(d, v), d, cs + k);
      hn::StoreU(hn::Sin(d, v), d, sn + k);
    }
  }
  for (; k < n; ++k) {
    cs[k] = std::cos(a[k]);
    sn[k] = std::sin(a[k]);
  }
}

}  // namespace

// ---------------------------------------------------------------- causal conv

Tensor SsmCausalConvSilu(const Tensor& x, const Tensor& w, const Tensor& bias, float* tail) {
  op_check(x.defined() && x.rank() == 3, "ssm_causal_conv_silu", "x must be (batch, T, channels)");
  const int64_t Bt = x.dim(0), T = x.dim(1), Cd = x.dim(2);
  op_check(w.defined() && w.rank() == 2 && w.dim(0) == Cd, "ssm_causal_conv_silu",
           "w must be (" + std::to_string(Cd) + ", K), got " +
               (w.defined() ? w.shape().str() : "undefined"));
  op_check(bias.defined() && bias.numel() == Cd, "ssm_causal_conv_silu",
           "bias must have " + std::to_string(Cd) + " elements");
  const int64_t K = w.dim(1);
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x, w, bias}));
  const bool save = y.requires_grad();
  float* pre = save ? g.alloc(x.numel()) : nullptr;
  const float *xd = x.data(), *bd = bias.data();
  float* yd = y.data();
  // Taps transposed to (K, Cd) so every loop runs over contiguous channels.
  float* wt = g.alloc(K * Cd);
  for (int64_t c = 0; c < Cd; ++c)
    for (int64_t k = 0; k < K; ++k) wt[k * Cd + c] = w.data()[c * K + k];
  // Input at (b, tau) for tau in [-(K-1), T): the tail or zeros before 0.
  auto in_row = [=](int64_t b, int64_t tau) -> const float* {
    if (tau >= 0) return xd + (b * T + tau) * Cd;
    return tail ? tail + (b * (K - 1) + (K - 1 + tau)) * Cd : nullptr;
  };
  parallel_for(
      Bt * T,
      [&](int64_t r) {
        const int64_t b = r / T, t = r % T;
        float* yr = yd + r * Cd;
        float* pr = pre ? pre + r * Cd : yr;
        for (int64_t c = 0; c < Cd; ++c) pr[c] = bd[c];
        for (int64_t k = 0; k < K; ++k) {
          const float* xr = in_row(b, t - K + 1 + k);
          if (!xr) continue;
          const float* wk = wt + k * Cd;
#pragma omp simd
          for (int64_t c = 0; c < Cd; ++c) pr[c] += wk[c] * xr[c];
        }
        if (pr != yr) {
          sigmoid_row(pr, yr, Cd);
          for (int64_t c = 0; c < Cd; ++c) yr[c] *= pr[c];
        } else {
          span_silu(yr, yr, Cd);
        }
      },
      grain_for(2 * Cd * (K + 4)));
  if (save) {
    // Backward treats the tail as a constant (decoding runs without gradients).
    const float* tail_c = tail;
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy) return;
      Graph& gg = current_graph();
      float* dx = grad_if(x);
      float* dw = grad_if(w);
      float* db = grad_if(bias);
      // Per batch row: dw in (K, Cd) layout, db (Cd), and a sigmoid row.
      const int64_t per = Cd * (K + 2);
      float* part = gg.alloc(Bt * per);
      auto row_in = [=](int64_t b, int64_t tau) -> const float* {
        if (tau >= 0) return xd + (b * T + tau) * Cd;
        return tail_c ? tail_c + (b * (K - 1) + (K - 1 + tau)) * Cd : nullptr;
      };
      parallel_for(
          Bt,
          [&](int64_t b) {
            float* pw = part + b * per;
            float* pb = pw + Cd * K;
            float* dp = pb + Cd;
            std::memset(pw, 0, sizeof(float) * size_t(Cd * (K + 1)));
            for (int64_t t = 0; t < T; ++t) {
              const int64_t r = b * T + t;
              const float* dyr = dy + r * Cd;
              const float* pr = pre + r * Cd;
              sigmoid_row(pr, dp, Cd);
#pragma omp simd
              for (int64_t c = 0; c < Cd; ++c) {
                const float s = dp[c];
                dp[c] = dyr[c] * s * (1.0f + pr[c] * (1.0f - s));
                pb[c] += dp[c];
              }
              for (int64_t k = 0; k < K; ++k) {
                const int64_t tau = t - K + 1 + k;
                const float* xr = row_in(b, tau);
                if (!xr) continue;
                float* pwk = pw + k * Cd;
#pragma omp simd
                for (int64_t c = 0; c < Cd; ++c) pwk[c] += dp[c] * xr[c];
                if (dx && tau >= 0) {
                  float* dxr = dx + (b * T + tau) * Cd;
                  const float* wk = wt + k * Cd;
#pragma omp simd
                  for (int64_t c = 0; c < Cd; ++c) dxr[c] += wk[c] * dp[c];
                }
              }
            }
          },
          grain_for(T * Cd * (4 * K + 8)));
      for (int64_t b = 0; b < Bt; ++b) {
        const float* pw = part + b * per;
        if (dw)
          for (int64_t c = 0; c < Cd; ++c)
            for (int64_t k = 0; k < K; ++k) dw[c * K + k] += pw[k * Cd + c];
        if (db)
          for (int64_t c = 0; c < Cd; ++c) db[c] += pw[Cd * K + c];
      }
    });
  }
  if (tail && K > 1) {
    // New tail: the last K-1 inputs of [old tail, x]. Ascending j reads old
    // tail rows at j + T > j, which are not yet overwritten.
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t j = 0; j < K - 1; ++j) {
        const int64_t tau = T - (K - 1) + j;
        float* dst = tail + (b * (K - 1) + j) * Cd;
        const float* src = tau >= 0 ? xd + (b * T + tau) * Cd : tail + (b * (K - 1) + j + T) * Cd;
        std::memmove(dst, src, sizeof(float) * size_t(Cd));
      }
  }
  return y;
}

// ---------------------------------------------------------------- discretisation

SsmDiscretization SsmDiscretize(const Tensor& dt_raw, const Tensor& dt_bias, const Tensor& A_log,
                                bool trapezoidal) {
  op_check(dt_raw.defined() && dt_raw.rank() >= 1, "ssm_discretize", "dt_raw must be (..., H)");
  const int64_t H = dt_raw.cols(), rows = dt_raw.rows();
  op_check(dt_bias.defined() && dt_bias.numel() == H && A_log.defined() && A_log.numel() == H,
           "ssm_discretize", "dt_bias and A_log must have " + std::to_string(H) + " elements");
  Graph& g = current_graph();
  const bool rg = g.needs_grad({dt_raw, dt_bias, A_log});
  SsmDiscretization out;
  out.dt = g.empty(dt_raw.shape(), rg);
  out.log_decay = g.empty(dt_raw.shape(), rg);
  if (trapezoidal) out.w_prev = g.empty(dt_raw.shape(), rg);
  const float *rd = dt_raw.data(), *bd = dt_bias.data(), *ld = A_log.data();
  float *dtd = out.dt.data(), *lad = out.log_decay.data();
  float* wpd = trapezoidal ? out.w_prev.data() : nullptr;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t i = r * H + h;
      const float dt = softplus_f(rd[i] + bd[h]);
      dtd[i] = dt;
      lad[i] = -std::exp(ld[h]) * dt;
      if (wpd) wpd[i] = 0.5f * dt * std::exp(lad[i]);
    }
  if (rg) {
    const Tensor dt = out.dt, la = out.log_decay, wp = out.w_prev;
    g.on_backward([=] {
      const float* gdt = dt.grad();
      const float* gla = la.grad();
      const float* gwp = wp.defined() ? wp.grad() : nullptr;
      if (!gdt && !gla && !gwp) return;
      float* draw = grad_if(dt_raw);
      float* dbias = grad_if(dt_bias);
      float* dalog = grad_if(A_log);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t i = r * H + h;
          const float A = -std::exp(ld[h]), d = dtd[i], e = std::exp(lad[i]);
          float gd = gdt ? gdt[i] : 0.0f, gA = 0.0f;
          if (gla) {
            gd += gla[i] * A;
            gA += gla[i] * d;
          }
          if (gwp) {  // w_prev = d/2 e^{A d}
            gd += gwp[i] * 0.5f * e * (1.0f + lad[i]);
            gA += gwp[i] * 0.5f * d * d * e;
          }
          const float du = gd * sigmoid_f(rd[i] + bd[h]);
          if (draw) draw[i] += du;
          if (dbias) dbias[h] += du;
          if (dalog) dalog[h] += gA * A;  // dA/dA_log = A
        }
    });
  }
  return out;
}

// ---------------------------------------------------------------- gated RMSNorm

Tensor SsmGatedRmsNorm(const Tensor& y, const Tensor& z, const Tensor& weight, int64_t group_size,
                       float eps) {
  op_check(y.defined() && z.defined() && y.shape() == z.shape(), "ssm_gated_rms_norm",
           "y and z must have the same shape");
  const int64_t D = y.cols(), rows = y.rows();
  op_check(weight.defined() && weight.numel() == D, "ssm_gated_rms_norm",
           "weight must have " + std::to_string(D) + " elements");
  op_check(group_size > 0 && D % group_size == 0, "ssm_gated_rms_norm",
           "group_size must divide " + std::to_string(D));
  const int64_t ng = D / group_size;
  Graph& g = current_graph();
  Tensor out = g.empty(y.shape(), g.needs_grad({y, z, weight}));
  float* rstd = g.alloc(rows * ng);
  float* sig = out.requires_grad() ? g.alloc(y.numel()) : nullptr;  // sigmoid(z) for backward
  const float *yd = y.data(), *zd = z.data(), *wd = weight.data();
  float* od = out.data();
  parallel_for(
      rows,
      [&](int64_t r) {
        float* sr = sig ? sig + r * D : od + r * D;
        sigmoid_row(zd + r * D, sr, D);
        for (int64_t q = 0; q < ng; ++q) {
          const int64_t o = r * D + q * group_size;
          float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
          for (int64_t j = 0; j < group_size; ++j) {
            const float u = yd[o + j] * zd[o + j] * sr[q * group_size + j];
            od[o + j] = u;
            ss += u * u;
          }
          const float rs = 1.0f / std::sqrt(ss / float(group_size) + eps);
          rstd[r * ng + q] = rs;
          for (int64_t j = 0; j < group_size; ++j) od[o + j] *= rs * wd[q * group_size + j];
        }
      },
      grain_for(8 * D));
  if (out.requires_grad()) {
    g.on_backward([=] {
      const float* dout = out.grad();
      if (!dout) return;
      Graph& gg = current_graph();
      float* dy = grad_if(y);
      float* dz = grad_if(z);
      float* dw = grad_if(weight);
      const int64_t nc = std::clamp<int64_t>(rows * D / 16384, 1, 16);
      float* part = dw ? gg.alloc(nc * D) : nullptr;
      parallel_for(nc, [&](int64_t c) {
        float* pw = part ? part + c * D : nullptr;
        if (pw) std::memset(pw, 0, sizeof(float) * size_t(D));
        for (int64_t r = c * rows / nc; r < (c + 1) * rows / nc; ++r)
          for (int64_t q = 0; q < ng; ++q) {
            const int64_t o = r * D + q * group_size;
            const float rs = rstd[r * ng + q];
            float m = 0.0f;  // mean(dout * w * uhat)
#pragma omp simd reduction(+ : m)
            for (int64_t j = 0; j < group_size; ++j) {
              const float uh = yd[o + j] * zd[o + j] * sig[o + j] * rs;
              m += dout[o + j] * wd[q * group_size + j] * uh;
            }
            if (pw)
              for (int64_t j = 0; j < group_size; ++j)
                pw[q * group_size + j] += dout[o + j] * yd[o + j] * zd[o + j] * sig[o + j] * rs;
            m /= float(group_size);
#pragma omp simd
            for (int64_t j = 0; j < group_size; ++j) {
              const float zz = zd[o + j], s = sig[o + j], yy = yd[o + j];
              const float uh = yy * zz * s * rs;
              const float du = rs * (dout[o + j] * wd[q * group_size + j] - uh * m);
              if (dy) dy[o + j] += du * zz * s;
              if (dz) dz[o + j] += du * yy * s * (1.0f + zz * (1.0f - s));
            }
          }
      });
      if (dw)
        for (int64_t c = 0; c < nc; ++c)
          for (int64_t j = 0; j < D; ++j) dw[j] += part[c * D + j];
    });
  }
  return out;
}

// ---------------------------------------------------------------- B/C rotary

RotatedBC SsmBcRotary(const Tensor& B, const Tensor& C, const Tensor& theta, const Tensor& dt,
                      int64_t H, int64_t G, float* phase) {
  const char* op = "ssm_bc_rotary";
  op_check(B.defined() && B.rank() == 3 && C.defined() && C.shape() == B.shape(), op,
           "B and C must be (batch, T, groups*N) of the same shape");
  op_check(H > 0 && G > 0 && H % G == 0 && B.dim(2) % G == 0, op,
           "n_heads must be a multiple of n_groups, and B's width divisible by n_groups");
  const int64_t Bt = B.dim(0), T = B.dim(1), N = B.dim(2) / G, N2 = N / 2, hpg = H / G;
  op_check(N % 2 == 0, op, "state size N must be even, got " + std::to_string(N));
  op_check(theta.defined() && theta.shape() == Shape({Bt, T, N2}), op,
           "theta must be " + Shape({Bt, T, N2}).str());
  op_check(dt.defined() && dt.shape() == Shape({Bt, T, H}), op,
           "dt must be " + Shape({Bt, T, H}).str());
  Graph& g = current_graph();
  const bool rg = g.needs_grad({B, C, theta, dt});
  RotatedBC out;
  out.B = g.empty(Shape{Bt, T, H * N}, rg);
  out.C = g.empty(Shape{Bt, T, H * N}, rg);
  float* phi = g.alloc(Bt * T * H * N2);  // angles, kept for backward
  const float *Bd = B.data(), *Cd = C.data(), *thd = theta.data(), *dtd = dt.data();
  float *oB = out.B.data(), *oC = out.C.data();
  auto rotate = [](const float* src, float* dst, const float* cs, const float* sn, int64_t n2) {
#pragma omp simd
    for (int64_t k = 0; k < n2; ++k) {
      const float a = src[k], b = src[k + n2];
      dst[k] = a * cs[k] - b * sn[k];
      dst[k + n2] = b * cs[k] + a * sn[k];
    }
  };
  float* trig = g.alloc(Bt * H * N);  // per task: cos and sin of one angle row
  parallel_for(
      Bt * H,
      [&](int64_t task) {
        const int64_t b = task / H, h = task % H, grp = h / hpg;
        float* ph0 = phase ? phase + task * N2 : nullptr;
        float* cs = trig + task * N;
        float* sn = cs + N2;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t row = b * T + t;
          float* ang = phi + (row * H + h) * N2;
          const float* prev = t > 0 ? ang - H * N2 : ph0;
          const float d = dtd[row * H + h];
          for (int64_t k = 0; k < N2; ++k) ang[k] = (prev ? prev[k] : 0.0f) + d * thd[row * N2 + k];
          sincos_row(ang, cs, sn, N2);
          rotate(Bd + row * G * N + grp * N, oB + (row * H + h) * N, cs, sn, N2);
          rotate(Cd + row * G * N + grp * N, oC + (row * H + h) * N, cs, sn, N2);
        }
        if (ph0 && T > 0)
          std::memcpy(ph0, phi + ((b * T + T - 1) * H + h) * N2, sizeof(float) * N2);
      },
      grain_for(T * N * 8));
  if (rg) {
    const Tensor oBt = out.B, oCt = out.C;
    g.on_backward([=] {
      const float* gB = oBt.grad();
      const float* gC = oCt.grad();
      if (!gB && !gC) return;
      Graph& gg = current_graph();
      float* dB = grad_if(B);
      float* dC = grad_if(C);
      float* dth = grad_if(theta);
      float* ddt = grad_if(dt);
      float* accs = gg.alloc(Bt * (N2 + N));
      const float *oBd = oBt.data(), *oCd = oCt.data();
      // d out1/d phi = -out2, d out2/d phi = out1; dsrc = R(-phi) dout.
      auto back = [](const float* gout, const float* o, float* dsrc, const float* cs,
                     const float* sn, int64_t n2, float* dphi) {
#pragma omp simd
        for (int64_t k = 0; k < n2; ++k) {
          const float g1 = gout[k], g2 = gout[k + n2];
          dphi[k] += -g1 * o[k + n2] + g2 * o[k];
          if (dsrc) {
            dsrc[k] += g1 * cs[k] + g2 * sn[k];
            dsrc[k + n2] += -g1 * sn[k] + g2 * cs[k];
          }
        }
      };
      parallel_for(
          Bt,
          [&](int64_t b) {
            float* acc = accs + b * (N2 + N);  // reverse cumsum of dphi = grad of the increment
            float* cs = acc + N2;
            float* sn = cs + N2;
            for (int64_t h = 0; h < H; ++h) {
              const int64_t grp = h / hpg;
              std::memset(acc, 0, sizeof(float) * size_t(N2));
              for (int64_t t = T - 1; t >= 0; --t) {
                const int64_t row = b * T + t, oh = (row * H + h) * N;
                sincos_row(phi + (row * H + h) * N2, cs, sn, N2);
                const int64_t src = row * G * N + grp * N;
                if (gB) back(gB + oh, oBd + oh, dB ? dB + src : nullptr, cs, sn, N2, acc);
                if (gC) back(gC + oh, oCd + oh, dC ? dC + src : nullptr, cs, sn, N2, acc);
                const float d = dtd[row * H + h];
                float sdt = 0.0f;
                for (int64_t k = 0; k < N2; ++k) {
                  if (dth) dth[row * N2 + k] += acc[k] * d;
                  sdt += acc[k] * thd[row * N2 + k];
                }
                if (ddt) ddt[row * H + h] += sdt;
              }
            }
          },
          grain_for(H * T * N * 12));
    });
  }
  return out;
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(SsmCausalConvSilu);
HWY_EXPORT(SsmDiscretize);
HWY_EXPORT(SsmGatedRmsNorm);
HWY_EXPORT(SsmBcRotary);

Tensor ssm_causal_conv_silu(const Tensor& x, const Tensor& w, const Tensor& b, float* tail) {
  return BL_DISPATCH(SsmCausalConvSilu)(x, w, b, tail);
}

SsmDiscretization ssm_discretize(const Tensor& dt_raw, const Tensor& dt_bias, const Tensor& A_log,
                                 bool trapezoidal) {
  return BL_DISPATCH(SsmDiscretize)(dt_raw, dt_bias, A_log, trapezoidal);
}

Tensor ssm_gated_rms_norm(const Tensor& y, const Tensor& z, const Tensor& weight,
                          int64_t group_size, float eps) {
  return BL_DISPATCH(SsmGatedRmsNorm)(y, z, weight, group_size, eps);
}

RotatedBC ssm_bc_rotary(const Tensor& B, const Tensor& C, const Tensor& theta, const Tensor& dt,
                        int64_t n_heads, int64_t n_groups, float* phase) {
  return BL_DISPATCH(SsmBcRotary)(B, C, theta, dt, n_heads, n_groups, phase);
}

}  // namespace bl
#endif  // HWY_ONCE
