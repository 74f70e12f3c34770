// Chunkwise gated delta rule, forward and backward.
//
// Notation per (batch, head), with h = Sᵀ (key x value, D x D) the state at
// the start of a chunk of n rows, G_i = g_1 + ... + g_i the within-chunk
// cumulative log decay, Γ_i = exp(G_i) and Q̂ = scale * Q. Unrolling the
// recurrence inside the chunk gives h_i = Γ_i h + Σ_{j<=i} exp(G_i - G_j) k_j u_jᵀ
// with "pseudo values" u_i = β_i (v_i - exp(g_i) h_{i-1}ᵀ k_i), i.e.
//   (I + A) U = diag(β) V - diag(βΓ) K h,   A_ij = β_i exp(G_i - G_j) k_i·k_j (j < i).
// With T = (I + A)^-1 (unit lower triangular, by forward substitution) and
// [Ũ | W] = T [βV | βΓK] (the WY / UT representation), U = Ũ - W h, and
//   O      = (Γ ⊙ Q̂) h + ((Q̂ Kᵀ) ⊙ M) U,   M_ij = exp(G_i - G_j) for j <= i
//   h_next = Γ_n h + (D ⊙ K)ᵀ U,           D_j = exp(G_n - G_j).
// Everything inside a chunk is GEMMs on (n x n) and (n x D) blocks; only h is
// carried across chunks. Every exponent is <= 0 (g <= 0), so nothing overflows.
//
// Backward walks the chunks in reverse carrying dh, recomputes each chunk from
// the state saved at its start, and differentiates the formulas above by hand;
// dT is never formed: with X = T B, dA = -(Tᵀ dX) Xᵀ restricted to j < i.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/gated_delta_rule.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "ops/check.h"
#include "ops/gated_delta_rule.h"
#include "simd/isa.h"
#include "simd/span_ops.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace {

struct Geo {
  int64_t B, T, H, D;
  int64_t ld;  // row stride of q, k, v, o: H * D
  int64_t C;   // chunk length
  int64_t nc;  // chunks per sequence
};

// Below this much work (~multiply-adds) a loop runs on one thread.
constexpr double kMinParallelWork = double(1 << 18);

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One task's buffers for one chunk of n <= C rows. (C x C) matrices have row
// stride C, (C x D) ones D, (C x 2D) ones 2D.
struct Chunk {
  float *k, *q, *v;            // K, Q̂ = scale * Q, V packed
  float* qg;                   // Γ ⊙ Q̂
  float* kd;                   // D ⊙ K
  float* rhs;                  // [βV | βΓK]
  float* uw;                   // [Ũ | W] = T rhs
  float* u;                    // U = Ũ - W h
  float* kk;                   // K Kᵀ
  float* a;                    // A, strictly lower (zero elsewhere)
  float* t;                    // (I + A)^-1
  float* p;                    // (Q̂ Kᵀ) ⊙ M, zero above the diagonal
  float* e;                    // M: exp(G_i - G_j) for j <= i (entries above the diagonal unset)
  float *G, *gam, *bet, *dec;  // G, Γ, β, D_j = exp(G_n - G_j)

  static int64_t floats(int64_t C, int64_t D) { return 10 * C * D + 5 * C * C + 4 * C; }
  Chunk(float* s, int64_t C, int64_t D) {
    k = s, q = k + C * D, v = q + C * D, qg = v + C * D, kd = qg + C * D;
    rhs = kd + C * D, uw = rhs + 2 * C * D, u = uw + 2 * C * D;
    kk = u + C * D, a = kk + C * C, t = a + C * C, p = t + C * C, e = p + C * C;
    G = e + C * C, gam = G + C, bet = gam + C, dec = bet + C;
  }
};

// Gradient buffers of one chunk.
struct ChunkGrad {
  float* dO;   // (C x D)
  float* dUW;  // [dU | dW] (C x 2D)
  float* dB;   // Tᵀ [dU | dW] = [d(βV) | d(βΓK)] (C x 2D)
  float* x;    // (C x D) scratch
  float *dq, *dk, *dv;
  float* dP;  // (C x C): dP, then dS
  float* dA;  // (C x C): dA, then d(K Kᵀ)
  float *dG, *dgam, *dbet;
  float *dh, *dh2;  // (D x D)

  static int64_t floats(int64_t C, int64_t D) { return 9 * C * D + 2 * C * C + 3 * C + 2 * D * D; }
  ChunkGrad(float* s, int64_t C, int64_t D) {
    dO = s, dUW = dO + C * D, dB = dUW + 2 * C * D, x = dB + 2 * C * D;
    dq = x + C * D, dk = dq + C * D, dv = dk + C * D;
    dP = dv + C * D, dA = dP + C * C;
    dG = dA + C * C, dgam = dG + C, dbet = dgam + C;
    dh = dbet + C, dh2 = dh + D * D;
  }
};

// Everything in a chunk that does not depend on the incoming state.
void prepare_chunk(const float* qd, const float* kd, const float* vd, const float* gd,
                   const float* bd, const Geo& s, int64_t b, int64_t h, int64_t c0, int64_t n,
                   float scale, Chunk& w) {
  const int64_t D = s.D, C = s.C, D2 = 2 * D;
  float G = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = (b * s.T + c0 + i) * s.ld + h * D;
    const int64_t gi = (b * s.T + c0 + i) * s.H + h;
    std::memcpy(w.k + i * D, kd + row, sizeof(float) * size_t(D));
    std::memcpy(w.v + i * D, vd + row, sizeof(float) * size_t(D));
    float* qi = w.q + i * D;
    const float* qs = qd + row;
#pragma omp simd
    for (int64_t c = 0; c < D; ++c) qi[c] = scale * qs[c];
    G += gd[gi];
    w.G[i] = G;
    w.gam[i] = std::exp(G);
    w.bet[i] = bd[gi];
  }
  const float g_last = w.G[n - 1];
  // Decay factors with a vectorised exp (exp is a large share of the scalar work).
  span_exp_sub(g_last, w.G, n, w.dec);  // vectorised per ISA
  for (int64_t i = 0; i < n; ++i) span_exp_sub(w.G[i], w.G, i + 1, w.e + i * C);
  for (int64_t i = 0; i < n; ++i) {
    const float bi = w.bet[i], gi = w.gam[i], di = w.dec[i];
    const float *ki = w.k + i * D, *vi = w.v + i * D, *qi = w.q + i * D;
    float *r = w.rhs + i * D2, *qg = w.qg + i * D, *kdi = w.kd + i * D;
#pragma omp simd
    for (int64_t c = 0; c < D; ++c) {
      r[c] = bi * vi[c];
      r[D + c] = bi * gi * ki[c];
      qg[c] = gi * qi[c];
      kdi[c] = di * ki[c];
    }
  }
  gemm(false, true, n, n, D, 1.0f, w.k, D, w.k, D, 0.0f, w.kk, C);
  // A and T = (I + A)^-1 row by row: T_i = e_i - Σ_{j<i} A_ij T_j (T_j is zero past column j).
  for (int64_t i = 0; i < n; ++i) {
    float* ai = w.a + i * C;
    float* ti = w.t + i * C;
    std::memset(ai, 0, sizeof(float) * size_t(n));
    std::memset(ti, 0, sizeof(float) * size_t(n));
    ti[i] = 1.0f;
    for (int64_t j = 0; j < i; ++j) {
      const float aij = w.bet[i] * w.e[i * C + j] * w.kk[i * C + j];
      ai[j] = aij;
      const float* tj = w.t + j * C;
#pragma omp simd
      for (int64_t l = 0; l <= j; ++l) ti[l] -= aij * tj[l];
    }
  }
  gemm(false, false, n, D2, n, 1.0f, w.t, C, w.rhs, D2, 0.0f, w.uw, D2);
  gemm(false, true, n, n, D, 1.0f, w.q, D, w.k, D, 0.0f, w.p, C);
  for (int64_t i = 0; i < n; ++i) {
    float* pi = w.p + i * C;
    const float* ei = w.e + i * C;
#pragma omp simd
    for (int64_t j = 0; j <= i; ++j) pi[j] *= ei[j];
    for (int64_t j = i + 1; j < n; ++j) pi[j] = 0.0f;
  }
}

// U = Ũ - W h for the chunk's incoming state h.
void pseudo_values(Chunk& w, const float* h, int64_t n, int64_t D) {
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(w.u + i * D, w.uw + i * 2 * D, sizeof(float) * size_t(D));
  gemm(false, false, n, D, D, -1.0f, w.uw + D, 2 * D, h, D, 1.0f, w.u, D);
}

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                  const Tensor& beta, int64_t n_heads, const char* op) {
  op_check(q.defined() && k.defined() && v.defined() && g.defined() && beta.defined(), op,
           "q, k, v, g and beta must be defined");
  op_check(q.rank() == 3, op, "q must be (B, T, H*D), got " + q.shape().str());
  op_check(k.shape() == q.shape() && v.shape() == q.shape(), op,
           "q, k, v must have one shape, got " + q.shape().str() + ", " + k.shape().str() + ", " +
               v.shape().str());
  op_check(n_heads > 0 && q.cols() % n_heads == 0, op,
           "last dim of q " + q.shape().str() +
               " is not a multiple of n_heads = " + std::to_string(n_heads));
  const Shape gs{q.dim(0), q.dim(1), n_heads};
  op_check(
      g.shape() == gs && beta.shape() == gs, op,
      "g and beta must be " + gs.str() + ", got " + g.shape().str() + ", " + beta.shape().str());
}

}  // namespace

Tensor GatedDeltaRule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                      const Tensor& beta, int64_t n_heads, float scale, int64_t chunk) {
  check_inputs(q, k, v, g, beta, n_heads, "gated_delta_rule");
  op_check(chunk > 0, "gated_delta_rule", "chunk must be > 0, got " + std::to_string(chunk));
  const int64_t B = q.dim(0), T = q.dim(1), D = q.cols() / n_heads;
  const int64_t C = std::min(chunk, std::max<int64_t>(T, 1));
  const Geo s{B, T, n_heads, D, q.cols(), C, (T + C - 1) / C};

  Graph& gr = current_graph();
  Tensor y = gr.empty(q.shape(), gr.needs_grad({q, k, v, g, beta}));
  if (y.numel() == 0) return y;
  const bool save = y.requires_grad();
  const int64_t n_tasks = B * n_heads, state_sz = D * D;
  // States entering each chunk, (B, H, n_chunks, D, D), for backward.
  float* saved = save ? gr.alloc(n_tasks * s.nc * state_sz) : nullptr;
  // Per (b, h): ~10 C D + 6 D^2 multiply-adds per position (see mixing_flops_per_token).
  const double work = double(n_tasks) * double(T) * double(D) * double(10 * C + 6 * D);
  const int nt = task_threads(n_tasks, work, kMinParallelWork);
  const int64_t per_thread = Chunk::floats(C, D) + state_sz;
  float* scratch = gr.alloc(nt * per_thread);
  {
    const float *qd = q.data(), *kd = k.data(), *vd = v.data(), *gd = g.data(), *bd = beta.data();
    float* od = y.data();
    run_tasks(n_tasks, nt, [&](int64_t task, int tid) {
      const int64_t b = task / s.H, h = task % s.H;
      float* base = scratch + tid * per_thread;
      Chunk w(base, C, D);
      float* st = base + Chunk::floats(C, D);
      std::memset(st, 0, sizeof(float) * size_t(state_sz));
      for (int64_t c = 0; c < s.nc; ++c) {
        const int64_t c0 = c * C, n = std::min(C, T - c0);
        if (saved)
          std::memcpy(saved + (task * s.nc + c) * state_sz, st, sizeof(float) * size_t(state_sz));
        prepare_chunk(qd, kd, vd, gd, bd, s, b, h, c0, n, scale, w);
        pseudo_values(w, st, n, D);
        float* orow = od + (b * T + c0) * s.ld + h * D;
        gemm(false, false, n, D, D, 1.0f, w.qg, D, st, D, 0.0f, orow, s.ld);
        gemm(false, false, n, D, n, 1.0f, w.p, C, w.u, D, 1.0f, orow, s.ld);
        const float gl = w.gam[n - 1];
#pragma omp simd
        for (int64_t e = 0; e < state_sz; ++e) st[e] *= gl;
        gemm(true, false, D, D, n, 1.0f, w.kd, D, w.u, D, 1.0f, st, D);
      }
    });
  }
  if (!save) return y;

  gr.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    float* dq_out = gg.grad_if_required(q);
    float* dk_out = gg.grad_if_required(k);
    float* dv_out = gg.grad_if_required(v);
    float* dg_out = gg.grad_if_required(g);
    float* db_out = gg.grad_if_required(beta);
    const int bnt = task_threads(n_tasks, 2.0 * work, kMinParallelWork);
    const int64_t per = Chunk::floats(C, D) + ChunkGrad::floats(C, D);
    float* bscratch = gg.alloc(bnt * per);
    const float *qd = q.data(), *kd = k.data(), *vd = v.data(), *gd = g.data(), *bd = beta.data();
    run_tasks(n_tasks, bnt, [&](int64_t task, int tid) {
      const int64_t b = task / s.H, h = task % s.H, D2 = 2 * D;
      float* base = bscratch + tid * per;
      Chunk w(base, C, D);
      ChunkGrad dw(base + Chunk::floats(C, D), C, D);
      float *dh = dw.dh, *dh2 = dw.dh2;
      std::memset(dh, 0, sizeof(float) * size_t(state_sz));
      for (int64_t c = s.nc - 1; c >= 0; --c) {
        const int64_t c0 = c * C, n = std::min(C, T - c0);
        const float* h0 = saved + (task * s.nc + c) * state_sz;
        prepare_chunk(qd, kd, vd, gd, bd, s, b, h, c0, n, scale, w);
        pseudo_values(w, h0, n, D);
        const float gl = w.gam[n - 1];
        for (int64_t i = 0; i < n; ++i)
          std::memcpy(dw.dO + i * D, dy + (b * T + c0 + i) * s.ld + h * D,
                      sizeof(float) * size_t(D));
        std::memset(dw.dG, 0, sizeof(float) * size_t(3 * C));  // dG, dgam, dbet

        // dU = Pᵀ dO + (D ⊙ K) dh
        gemm(true, false, n, D, n, 1.0f, w.p, C, dw.dO, D, 0.0f, dw.dUW, D2);
        gemm(false, false, n, D, D, 1.0f, w.kd, D, dh, D, 1.0f, dw.dUW, D2);
        // h_next's (D ⊙ K)ᵀ U: with X = U dhᵀ, dK_j = D_j X_j and dD_j = k_j·X_j.
        gemm(false, true, n, D, D, 1.0f, w.u, D, dh, D, 0.0f, dw.x, D);
        for (int64_t j = 0; j < n; ++j) {
          const float dj = w.dec[j];
          const float* xj = dw.x + j * D;
          float* dkj = dw.dk + j * D;
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) dkj[c] = dj * xj[c];
          const float t = dot(w.k + j * D, xj, D) * dj;
          dw.dG[n - 1] += t;
          dw.dG[j] -= t;
        }
        dw.dgam[n - 1] += dot(h0, dh, state_sz);  // h_next's Γ_n h
        // Intra-chunk term P U: dP = dO Uᵀ; P = (Q̂Kᵀ) ⊙ M gives dG from M and dS = dP ⊙ M.
        gemm(false, true, n, n, D, 1.0f, dw.dO, D, w.u, D, 0.0f, dw.dP, C);
        for (int64_t i = 0; i < n; ++i) {
          float* dpi = dw.dP + i * C;
          const float* pi = w.p + i * C;
          for (int64_t j = 0; j <= i; ++j) {
            const float t = dpi[j] * pi[j];
            dw.dG[i] += t;
            dw.dG[j] -= t;
            dpi[j] *= w.e[i * C + j];
          }
          for (int64_t j = i + 1; j < n; ++j) dpi[j] = 0.0f;
        }
        gemm(false, false, n, D, n, 1.0f, dw.dP, C, w.k, D, 0.0f, dw.dq, D);
        gemm(true, false, n, D, n, 1.0f, dw.dP, C, w.q, D, 1.0f, dw.dk, D);
        // Inter-chunk term (Γ ⊙ Q̂) h: with Y = dO hᵀ, dQ̂_i += Γ_i Y_i, dΓ_i += q̂_i·Y_i.
        gemm(false, true, n, D, D, 1.0f, dw.dO, D, h0, D, 0.0f, dw.x, D);
        for (int64_t i = 0; i < n; ++i) {
          const float* yi = dw.x + i * D;
          float* dqi = dw.dq + i * D;
          dw.dgam[i] += dot(w.q + i * D, yi, D);
          const float gi = w.gam[i];
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) dqi[c] += gi * yi[c];
        }
        // dh for the previous chunk: Γ_n dh + (Γ ⊙ Q̂)ᵀ dO - Wᵀ dU.
#pragma omp simd
        for (int64_t e = 0; e < state_sz; ++e) dh2[e] = gl * dh[e];
        gemm(true, false, D, D, n, 1.0f, w.qg, D, dw.dO, D, 1.0f, dh2, D);
        gemm(true, false, D, D, n, -1.0f, w.uw + D, D2, dw.dUW, D2, 1.0f, dh2, D);
        // dW = -dU hᵀ, then [d(βV) | d(βΓK)] = Tᵀ [dU | dW].
        gemm(false, true, n, D, D, -1.0f, dw.dUW, D2, h0, D, 0.0f, dw.dUW + D, D2);
        gemm(true, false, n, D2, n, 1.0f, w.t, C, dw.dUW, D2, 0.0f, dw.dB, D2);
        for (int64_t i = 0; i < n; ++i) {
          const float *dbv = dw.dB + i * D2, *dbw = dbv + D;
          const float *ki = w.k + i * D, *vi = w.v + i * D;
          const float bi = w.bet[i], gi = w.gam[i];
          float *dvi = dw.dv + i * D, *dki = dw.dk + i * D;
          const float kw = dot(ki, dbw, D);
          dw.dbet[i] += dot(vi, dbv, D) + gi * kw;
          dw.dgam[i] += bi * kw;
#pragma omp simd
          for (int64_t c = 0; c < D; ++c) {
            dvi[c] = bi * dbv[c];
            dki[c] += bi * gi * dbw[c];
          }
        }
        // dA = -(Tᵀ d[Ũ|W]) [Ũ|W]ᵀ on j < i; A_ij = β_i exp(G_i - G_j) (K Kᵀ)_ij.
        gemm(false, true, n, n, D2, -1.0f, dw.dB, D2, w.uw, D2, 0.0f, dw.dA, C);
        for (int64_t i = 0; i < n; ++i) {
          float* dai = dw.dA + i * C;
          const float* ai = w.a + i * C;
          const float bi = w.bet[i];
          float dbi = 0.0f;
          for (int64_t j = 0; j < i; ++j) {
            const float r = dai[j], e = w.e[i * C + j];
            dbi += r * e * w.kk[i * C + j];
            const float t = r * ai[j];
            dw.dG[i] += t;
            dw.dG[j] -= t;
            dai[j] = r * bi * e;  // d(K Kᵀ)_ij
          }
          dw.dbet[i] += dbi;
          dai[i] = 0.0f;
        }
        // d(K Kᵀ) = R (strictly lower) gives dK = (R + Rᵀ) K: mirror R, one product.
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = i + 1; j < n; ++j) dw.dA[i * C + j] = dw.dA[j * C + i];
        gemm(false, false, n, D, n, 1.0f, dw.dA, C, w.k, D, 1.0f, dw.dk, D);

        // Scatter into the input gradients; dg is the reverse cumsum of dG.
        float acc = 0.0f;
        for (int64_t i = n - 1; i >= 0; --i) {
          acc += dw.dG[i] + dw.dgam[i] * w.gam[i];
          const int64_t gi = (b * T + c0 + i) * s.H + h;
          if (dg_out) dg_out[gi] += acc;
          if (db_out) db_out[gi] += dw.dbet[i];
        }
        for (int64_t i = 0; i < n; ++i) {
          const int64_t row = (b * T + c0 + i) * s.ld + h * D;
          const float *dqi = dw.dq + i * D, *dki = dw.dk + i * D, *dvi = dw.dv + i * D;
          if (dq_out) {
            float* o = dq_out + row;
#pragma omp simd
            for (int64_t c = 0; c < D; ++c) o[c] += scale * dqi[c];
          }
          if (dk_out) {
            float* o = dk_out + row;
#pragma omp simd
            for (int64_t c = 0; c < D; ++c) o[c] += dki[c];
          }
          if (dv_out) {
            float* o = dv_out + row;
#pragma omp simd
            for (int64_t c = 0; c < D; ++c) o[c] += dvi[c];
          }
        }
        std::swap(dh, dh2);
      }
    });
  });
  return y;
}

Tensor GatedDeltaRuleRecurrent(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                               const Tensor& beta, int64_t n_heads, float scale, float* state) {
  check_inputs(q, k, v, g, beta, n_heads, "gated_delta_rule_recurrent");
  Graph& gr = current_graph();
  op_check(!gr.needs_grad({q, k, v, g, beta}), "gated_delta_rule_recurrent",
           "the recurrent (decoding) form has no backward; run it under NoGradGuard");
  op_check(state != nullptr, "gated_delta_rule_recurrent", "state must not be null");
  const int64_t B = q.dim(0), T = q.dim(1), H = n_heads, D = q.cols() / H, ld = q.cols();
  Tensor y = gr.empty(q.shape());
  const float *qd = q.data(), *kd = k.data(), *vd = v.data(), *gd = g.data(), *bd = beta.data();
  float* od = y.data();
  const int64_t per_task = std::max<int64_t>(1, T * 3 * D * D);
  parallel_for(
      B * H,
      [&](int64_t task) {
        const int64_t b = task / H, h = task % H;
        float* st = state + task * D * D;  // st[i * D + j]: key i, value j
        for (int64_t t = 0; t < T; ++t) {
          const int64_t row = (b * T + t) * ld + h * D, gi = (b * T + t) * H + h;
          const float *qt = qd + row, *kt = kd + row, *vt = vd + row;
          const float alpha = std::exp(gd[gi]), bt = bd[gi];
          float* ot = od + row;
          // u = β (v - α Sk), S = α S + u kᵀ, o = scale S q (in the transposed layout).
          std::memcpy(ot, vt, sizeof(float) * size_t(D));  // ot holds u, then o
          for (int64_t i = 0; i < D; ++i) {
            const float ki = alpha * kt[i];
            const float* si = st + i * D;
#pragma omp simd
            for (int64_t j = 0; j < D; ++j) ot[j] -= ki * si[j];
          }
          for (int64_t j = 0; j < D; ++j) ot[j] *= bt;
          for (int64_t i = 0; i < D; ++i) {
            const float ki = kt[i];
            float* si = st + i * D;
#pragma omp simd
            for (int64_t j = 0; j < D; ++j) si[j] = alpha * si[j] + ki * ot[j];
          }
          std::memset(ot, 0, sizeof(float) * size_t(D));
          for (int64_t i = 0; i < D; ++i) {
            const float qi = scale * qt[i];
            const float* si = st + i * D;
#pragma omp simd
            for (int64_t j = 0; j < D; ++j) ot[j] += qi * si[j];
          }
        }
      },
      std::max<int64_t>(1, (1 << 16) / per_task));
  return y;
}

Tensor GatedDeltaDecay(const Tensor& a, const Tensor& a_log, const Tensor& dt_bias) {
  op_check(a.defined() && a_log.defined() && dt_bias.defined(), "gated_delta_decay",
           "a, A_log and dt_bias must be defined");
  const int64_t H = a.rank() > 0 ? a.cols() : 0;
  op_check(H > 0 && a_log.numel() == H && dt_bias.numel() == H, "gated_delta_decay",
           "A_log " + a_log.shape().str() + " and dt_bias " + dt_bias.shape().str() +
               " must have " + std::to_string(H) + " elements (last dim of a " + a.shape().str() +
               ")");
  Graph& gr = current_graph();
  Tensor y = gr.empty(a.shape(), gr.needs_grad({a, a_log, dt_bias}));
  const int64_t rows = a.rows();
  const float *ad = a.data(), *al = a_log.data(), *db = dt_bias.data();
  float* yd = y.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < H; ++h) {
      const float x = ad[r * H + h] + db[h];
      const float sp = x > 20.0f ? x : std::log1p(std::exp(x));  // softplus
      yd[r * H + h] = -std::exp(al[h]) * sp;
    }
  if (!y.requires_grad()) return y;
  gr.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    float* da = gg.grad_if_required(a);
    float* dal = gg.grad_if_required(a_log);
    float* ddt = gg.grad_if_required(dt_bias);
    const float *ad = a.data(), *al = a_log.data(), *db = dt_bias.data(), *yd = y.data();
    for (int64_t h = 0; h < H; ++h) {
      const float ea = std::exp(al[h]);
      double s_al = 0, s_dt = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r * H + h;
        const float x = ad[i] + db[h];
        // d/dx softplus(x) = sigmoid(x); d/dA_log of -exp(A_log) sp = g itself.
        const float dx = -ea * dy[i] / (1.0f + std::exp(-x));
        if (da) da[i] += dx;
        s_dt += dx;
        s_al += double(dy[i]) * yd[i];
      }
      if (dal) dal[h] += float(s_al);
      if (ddt) ddt[h] += float(s_dt);
    }
  });
  return y;
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(GatedDeltaRule);
HWY_EXPORT(GatedDeltaRuleRecurrent);
HWY_EXPORT(GatedDeltaDecay);

Tensor gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                        const Tensor& beta, int64_t n_heads, float scale, int64_t chunk) {
  return BL_DISPATCH(GatedDeltaRule)(q, k, v, g, beta, n_heads, scale, chunk);
}

Tensor gated_delta_rule_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& g, const Tensor& beta, int64_t n_heads, float scale,
                                  float* state) {
  return BL_DISPATCH(GatedDeltaRuleRecurrent)(q, k, v, g, beta, n_heads, scale, state);
}

Tensor gated_delta_decay(const Tensor& a, const Tensor& a_log, const Tensor& dt_bias) {
  return BL_DISPATCH(GatedDeltaDecay)(a, a_log, dt_bias);
}

}  // namespace bl
#endif  // HWY_ONCE
