#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/ssd.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "ops/check.h"
#include "ops/ssd.h"
#include "simd/isa.h"
#include "simd/span_ops.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace {

struct Dims {
  int64_t bt, T, H, G, P, N, hpg, HP, GN, Q, nc;
};

Dims check_dims(const char* op, const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& B,
                const Tensor& C, const Tensor& D, const SsdShape& s) {
  op_check(x.defined() && x.rank() == 3, op, "x must be (batch, T, heads*head_dim)");
  Dims d{};
  d.bt = x.dim(0), d.T = x.dim(1), d.H = s.n_heads, d.G = s.n_groups;
  op_check(d.H > 0 && d.G > 0 && d.H % d.G == 0, op,
           "n_heads (" + std::to_string(d.H) + ") must be a positive multiple of n_groups (" +
               std::to_string(d.G) + ")");
  op_check(x.dim(2) % d.H == 0, op, "x width must be divisible by n_heads, got " + x.shape().str());
  const Shape hs{d.bt, d.T, d.H};
  op_check(w.defined() && w.shape() == hs, op,
           "w must be " + hs.str() + ", got " + (w.defined() ? w.shape().str() : "undefined"));
  op_check(
      a.defined() && a.shape() == hs, op,
      "log_decay must be " + hs.str() + ", got " + (a.defined() ? a.shape().str() : "undefined"));
  op_check(
      B.defined() && B.rank() == 3 && B.dim(0) == d.bt && B.dim(1) == d.T && B.dim(2) % d.G == 0,
      op, "B must be (batch, T, groups*N), got " + (B.defined() ? B.shape().str() : "undefined"));
  op_check(C.defined() && C.shape() == B.shape(), op, "C must have B's shape " + B.shape().str());
  op_check(!D.defined() || D.numel() == d.H, op, "D must have n_heads elements");
  d.P = x.dim(2) / d.H, d.N = B.dim(2) / d.G, d.hpg = d.H / d.G;
  d.HP = d.H * d.P, d.GN = d.G * d.N;
  op_check(s.chunk_size > 0, op, "chunk_size must be > 0");
  d.Q = std::max<int64_t>(1, std::min(s.chunk_size, d.T));
  d.nc = (d.T + d.Q - 1) / d.Q;
  return d;
}

// Tasks per thread so a parallel region carries at least ~64K flops: tiny
// problems run inline instead of paying a fork/join per call.
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, work_per_task));
}

// Cumulative log decay inside a chunk: s_i = a_0 + ... + a_i (a has stride H).
void chunk_cumsum(const float* a, int64_t H, int64_t q, float* s) {
  float acc = 0.0f;
  for (int64_t i = 0; i < q; ++i) {
    acc += a[i * H];
    s[i] = acc;
  }
}

// out[k] = exp(si - s[k]) for k < n (vectorised per ISA).
inline void exp_diff(float si, const float* s, int64_t n, float* out) {
  span_exp_sub(si, s, n, out);
}

// Decay matrix L (q x q, lower: L_ik = e^{s_i - s_k}) and M = L o CB o w (column k scaled by w_k).
void decay_and_mix(const float* CB, const float* s, const float* wv, int64_t q, float* L,
                   float* M) {
  for (int64_t i = 0; i < q; ++i) {
    float* Li = L + i * q;
    float* Mi = M + i * q;
    exp_diff(s[i], s, i + 1, Li);
#pragma omp simd
    for (int64_t k = 0; k <= i; ++k) Mi[k] = Li[k] * CB[i * q + k] * wv[k];
    for (int64_t k = i + 1; k < q; ++k) Mi[k] = 0.0f;
  }
}

void ssd_backward(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& B,
                  const Tensor& C, const Tensor& D, const Tensor& y, const float* states,
                  const Dims d) {
  const float* dy = y.grad();
  if (!dy) return;
  Graph& g = current_graph();
  auto grad_or_scratch = [&](const Tensor& t) {
    if (t.requires_grad()) return g.grad(t);
    float* p = g.alloc(t.numel());
    std::memset(p, 0, sizeof(float) * size_t(t.numel()));
    return p;
  };
  float* dx = grad_or_scratch(x);
  float* dw = grad_or_scratch(w);
  float* da = grad_or_scratch(a);
  float* dB = grad_or_scratch(B);
  float* dC = grad_or_scratch(C);
  const bool need_d = D.defined() && D.requires_grad();
  float* dD = need_d ? g.grad(D) : nullptr;
  const int64_t Q = d.Q, N = d.N, P = d.P, PN = P * N, H = d.H, HP = d.HP, GN = d.GN;
  const int64_t QM = Q * std::max(N, P);
  const int64_t per = 5 * Q * Q + 2 * QM + d.hpg * PN + PN + 4 * Q + d.hpg;
  const int64_t ntask = d.bt * d.G;
  float* scratch = g.alloc(ntask * per);
  const float *xd = x.data(), *wd = w.data(), *ad = a.data(), *Bd = B.data(), *Cd = C.data();
  const float* Dd = D.defined() ? D.data() : nullptr;

  const int64_t task_work = 6 * d.T * (Q * (N + P * d.hpg) + P * N * d.hpg);
  parallel_for(
      ntask,
      [&](int64_t task) {
        const int64_t b = task / d.G, grp = task % d.G;
        float* CB = scratch + task * per;
        float* M = CB + Q * Q;
        float* dM = M + Q * Q;
        float* dCB = dM + Q * Q;
        float* L = dCB + Q * Q;
        float* tmp = L + Q * Q;
        float* tmp2 = tmp + QM;
        float* dS = tmp2 + QM;  // grad of each head's chunk-end state
        float* dS0 = dS + d.hpg * PN;
        float* s = dS0 + PN;
        float* ds = s + Q;
        float* wv = ds + Q;
        float* dwv = wv + Q;
        float* dDp = dwv + Q;
        std::memset(dS, 0, sizeof(float) * size_t(d.hpg * PN));
        std::memset(dDp, 0, sizeof(float) * size_t(d.hpg));
        for (int64_t c = d.nc - 1; c >= 0; --c) {
          const int64_t t0 = c * Q, q = std::min(Q, d.T - t0);
          const int64_t row = b * d.T + t0;
          const float* Cc = Cd + row * GN + grp * N;
          const float* Bc = Bd + row * GN + grp * N;
          float* dCc = dC + row * GN + grp * N;
          float* dBc = dB + row * GN + grp * N;
          gemm(false, true, q, q, N, 1.0f, Cc, GN, Bc, GN, 0.0f, CB, q);
          std::memset(dCB, 0, sizeof(float) * size_t(q * q));
          for (int64_t j = 0; j < d.hpg; ++j) {
            const int64_t hh = grp * d.hpg + j;
            const float* S0 = states + ((b * H + hh) * d.nc + c) * PN;
            float* dSh = dS + j * PN;
            const float* wc = wd + row * H + hh;
            const float* ac = ad + row * H + hh;
            float* dwc = dw + row * H + hh;
            float* dac = da + row * H + hh;
            const float* Xc = xd + row * HP + hh * P;
            const float* dYc = dy + row * HP + hh * P;
            float* dXc = dx + row * HP + hh * P;
            chunk_cumsum(ac, H, q, s);
            std::memset(ds, 0, sizeof(float) * size_t(q));
            std::memset(dwv, 0, sizeof(float) * size_t(q));
            for (int64_t k = 0; k < q; ++k) wv[k] = wc[k * H];
            decay_and_mix(CB, s, wv, q, L, M);
            gemm(true, false, q, P, q, 1.0f, M, q, dYc, HP, 1.0f, dXc, HP);
            if (Dd) {
              const float Dh = Dd[hh];
              float acc = 0.0f;
              for (int64_t i = 0; i < q; ++i)
                for (int64_t p = 0; p < P; ++p) {
                  acc += dYc[i * HP + p] * Xc[i * HP + p];
                  dXc[i * HP + p] += Dh * dYc[i * HP + p];
                }
              dDp[j] += acc;
            }
            gemm(false, true, q, q, P, 1.0f, dYc, HP, Xc, HP, 0.0f, dM, q);
            for (int64_t i = 0; i < q; ++i) {
              const float* Li = L + i * q;
              const float* dMi = dM + i * q;
              const float* CBi = CB + i * q;
              float* dCBi = dCB + i * q;
              float rowsum = 0.0f;
#pragma omp simd reduction(+ : rowsum)
              for (int64_t k = 0; k <= i; ++k) {
                const float dl = dMi[k] * Li[k];
                dCBi[k] += dl * wv[k];
                const float t = dl * CBi[k];  // d/dw_k
                dwv[k] += t;
                const float gk = t * wv[k];  // dM o M: d/ds_i, -d/ds_k
                rowsum += gk;
                ds[k] -= gk;
              }
              ds[i] += rowsum;
            }
            for (int64_t k = 0; k < q; ++k) dwc[k * H] += dwv[k];
            if (c > 0) {
              // Y_state = diag(e^s) C S0ᵀ.
              gemm(false, true, q, P, N, 1.0f, Cc, GN, S0, N, 0.0f, tmp, P);
              for (int64_t i = 0; i < q; ++i) {
                const float e = std::exp(s[i]);
                float acc = 0.0f;
                for (int64_t p = 0; p < P; ++p) {
                  acc += dYc[i * HP + p] * tmp[i * P + p];
                  tmp2[i * P + p] = e * dYc[i * HP + p];
                }
                ds[i] += e * acc;
              }
              gemm(false, false, q, N, P, 1.0f, tmp2, P, S0, N, 1.0f, dCc, GN);
              gemm(true, false, P, N, q, 1.0f, tmp2, P, Cc, GN, 0.0f, dS0, N);
            }
            if (c < d.nc - 1) {
              // S1 = e^{s_last} S0 + Xᵀ diag(r) B, r_i = e^{s_last - s_i} w_i.
              const float sl = s[q - 1], el = std::exp(sl);
              gemm(false, true, q, P, N, 1.0f, Bc, GN, dSh, N, 0.0f, tmp, P);
              for (int64_t i = 0; i < q; ++i) {
                const float e = std::exp(sl - s[i]);
                const float r = e * wc[i * H];
                float dr = 0.0f;
                for (int64_t p = 0; p < P; ++p) {
                  dr += Xc[i * HP + p] * tmp[i * P + p];
                  dXc[i * HP + p] += r * tmp[i * P + p];
                  tmp2[i * P + p] = r * Xc[i * HP + p];
                }
                dwc[i * H] += dr * e;
                ds[q - 1] += dr * r;
                ds[i] -= dr * r;
              }
              gemm(false, false, q, N, P, 1.0f, tmp2, P, dSh, N, 1.0f, dBc, GN);
              if (c > 0) {
                float dot = 0.0f;
                for (int64_t k = 0; k < PN; ++k) dot += dSh[k] * S0[k];
                ds[q - 1] += el * dot;
                for (int64_t k = 0; k < PN; ++k) dSh[k] = el * dSh[k] + dS0[k];
              }
            } else if (c > 0) {
              std::memcpy(dSh, dS0, sizeof(float) * size_t(PN));
            }
            // s_i = sum_{k <= i} a_k  =>  da_k = sum_{i >= k} ds_i.
            float acc = 0.0f;
            for (int64_t i = q - 1; i >= 0; --i) {
              acc += ds[i];
              dac[i * H] += acc;
            }
          }
          // B and C are shared by the group's heads: one GEMM pair for all of them.
          gemm(false, false, q, N, q, 1.0f, dCB, q, Bc, GN, 1.0f, dCc, GN);
          gemm(true, false, q, N, q, 1.0f, dCB, q, Cc, GN, 1.0f, dBc, GN);
        }
      },
      grain_for(task_work));
  if (dD) {
    const float* part = scratch;  // per-task partials live at the end of each task block
    for (int64_t task = 0; task < ntask; ++task) {
      const int64_t grp = task % d.G;
      const float* dDp = part + task * per + (per - d.hpg);
      for (int64_t j = 0; j < d.hpg; ++j) dD[grp * d.hpg + j] += dDp[j];
    }
  }
}

}  // namespace

Tensor SsdChunked(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& B,
                  const Tensor& C, const Tensor& D, const SsdShape& shape) {
  const Dims d = check_dims("ssd_chunked", x, w, a, B, C, D, shape);
  Graph& g = current_graph();
  Tensor y = g.empty(x.shape(), g.needs_grad({x, w, a, B, C, D}));
  if (y.numel() == 0) return y;
  const int64_t Q = d.Q, N = d.N, P = d.P, PN = P * N, H = d.H, HP = d.HP, GN = d.GN;
  // Chunk-start states of every head, kept for backward.
  float* states = y.requires_grad() ? g.alloc(d.bt * H * d.nc * PN) : nullptr;
  const int64_t per = 3 * Q * Q + Q * N + d.hpg * PN + 2 * Q;
  const int64_t ntask = d.bt * d.G;
  float* scratch = g.alloc(ntask * per);
  const float *xd = x.data(), *wd = w.data(), *ad = a.data(), *Bd = B.data(), *Cd = C.data();
  const float* Dd = D.defined() ? D.data() : nullptr;
  float* yd = y.data();

  const int64_t task_work = 2 * d.T * (Q * (N + P * d.hpg) + P * N * d.hpg);
  parallel_for(
      ntask,
      [&](int64_t task) {
        const int64_t b = task / d.G, grp = task % d.G;
        float* CB = scratch + task * per;
        float* M = CB + Q * Q;
        float* L = M + Q * Q;
        float* tmp = L + Q * Q;
        float* S = tmp + Q * N;
        float* s = S + d.hpg * PN;
        float* wv = s + Q;
        std::memset(S, 0, sizeof(float) * size_t(d.hpg * PN));
        for (int64_t c = 0; c < d.nc; ++c) {
          const int64_t t0 = c * Q, q = std::min(Q, d.T - t0);
          const int64_t row = b * d.T + t0;
          const float* Cc = Cd + row * GN + grp * N;
          const float* Bc = Bd + row * GN + grp * N;
          gemm(false, true, q, q, N, 1.0f, Cc, GN, Bc, GN, 0.0f, CB, q);
          for (int64_t j = 0; j < d.hpg; ++j) {
            const int64_t hh = grp * d.hpg + j;
            float* Sh = S + j * PN;
            const float* wc = wd + row * H + hh;
            const float* Xc = xd + row * HP + hh * P;
            float* Yc = yd + row * HP + hh * P;
            chunk_cumsum(ad + row * H + hh, H, q, s);
            for (int64_t k = 0; k < q; ++k) wv[k] = wc[k * H];
            if (states)
              std::memcpy(states + ((b * H + hh) * d.nc + c) * PN, Sh, sizeof(float) * PN);
            // Intra-chunk: Y = (L o C Bᵀ) diag(w) X with L_ik = e^{s_i - s_k} (k <= i).
            decay_and_mix(CB, s, wv, q, L, M);
            gemm(false, false, q, P, q, 1.0f, M, q, Xc, HP, 0.0f, Yc, HP);
            if (c > 0) {  // the state entering the chunk, decayed to each position
              for (int64_t i = 0; i < q; ++i) {
                const float e = std::exp(s[i]);
                for (int64_t n = 0; n < N; ++n) tmp[i * N + n] = e * Cc[i * GN + n];
              }
              gemm(false, true, q, P, N, 1.0f, tmp, N, Sh, N, 1.0f, Yc, HP);
            }
            if (Dd) {
              const float Dh = Dd[hh];
              for (int64_t i = 0; i < q; ++i)
                for (int64_t p = 0; p < P; ++p) Yc[i * HP + p] += Dh * Xc[i * HP + p];
            }
            if (c + 1 < d.nc) {  // pass the state on: S = e^{s_last} S + Xᵀ diag(r) B
              const float sl = s[q - 1];
              for (int64_t i = 0; i < q; ++i) {
                const float r = std::exp(sl - s[i]) * wc[i * H];
                for (int64_t n = 0; n < N; ++n) tmp[i * N + n] = r * Bc[i * GN + n];
              }
              const float el = std::exp(sl);
              for (int64_t k = 0; k < PN; ++k) Sh[k] *= el;
              gemm(true, false, P, N, q, 1.0f, Xc, HP, tmp, N, 1.0f, Sh, N);
            }
          }
        }
      },
      grain_for(task_work));
  if (y.requires_grad()) g.on_backward([=] { ssd_backward(x, w, a, B, C, D, y, states, d); });
  return y;
}

Tensor SsdRecurrent(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& B,
                    const Tensor& C, const Tensor& D, const SsdShape& shape, float* state) {
  const Dims d = check_dims("ssd_recurrent", x, w, a, B, C, D, shape);
  Graph& g = current_graph();
  op_check(!g.needs_grad({x, w, a, B, C, D}), "ssd_recurrent",
           "the decoding scan has no backward; run it under NoGradGuard (train with ssd_chunked)");
  Tensor y = g.empty(x.shape());
  if (y.numel() == 0) return y;
  const int64_t N = d.N, P = d.P, PN = P * N, H = d.H, HP = d.HP, GN = d.GN;
  float* scratch = nullptr;
  if (!state) {
    scratch = g.alloc(d.bt * H * PN);
    std::memset(scratch, 0, sizeof(float) * size_t(d.bt * H * PN));
  }
  float* base = state ? state : scratch;
  const float *xd = x.data(), *wd = w.data(), *ad = a.data(), *Bd = B.data(), *Cd = C.data();
  const float* Dd = D.defined() ? D.data() : nullptr;
  float* yd = y.data();
  parallel_for(
      d.bt * H,
      [&](int64_t task) {
        const int64_t b = task / H, hh = task % H, grp = hh / d.hpg;
        float* S = base + task * PN;
        const float Dh = Dd ? Dd[hh] : 0.0f;
        for (int64_t t = 0; t < d.T; ++t) {
          const int64_t row = b * d.T + t;
          const float decay = std::exp(ad[row * H + hh]), wt = wd[row * H + hh];
          const float* xt = xd + row * HP + hh * P;
          const float* Bt = Bd + row * GN + grp * N;
          const float* Ct = Cd + row * GN + grp * N;
          float* yt = yd + row * HP + hh * P;
          for (int64_t p = 0; p < P; ++p) {
            float* Sp = S + p * N;
            const float u = wt * xt[p];
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int64_t n = 0; n < N; ++n) {
              Sp[n] = decay * Sp[n] + u * Bt[n];
              acc += Sp[n] * Ct[n];
            }
            yt[p] = acc + Dh * xt[p];
          }
        }
      },
      grain_for(3 * d.T * PN));
  return y;
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(SsdChunked);
HWY_EXPORT(SsdRecurrent);

Tensor ssd_chunked(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& B,
                   const Tensor& C, const Tensor& D, const SsdShape& shape) {
  return BL_DISPATCH(SsdChunked)(x, w, a, B, C, D, shape);
}

Tensor ssd_recurrent(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& B,
                     const Tensor& C, const Tensor& D, const SsdShape& shape, float* state) {
  return BL_DISPATCH(SsdRecurrent)(x, w, a, B, C, D, shape, state);
}

}  // namespace bl
#endif  // HWY_ONCE
