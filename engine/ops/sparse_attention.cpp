// Block-sparse attention kernels.
//
// Both attentions split work per (batch, kv head) task, like ops/attention:
// a task owns dK/dV of its kv head and dQ of its query heads, so backward has
// no accumulation races. Forward keeps only row logsumexps; backward
// recomputes the probabilities.
//  - compressed_attention: the few compressed blocks (T / block of them) make
//    plain GEMMs over all of them per head the cheapest form; the causal
//    restriction to complete blocks is a per-row prefix mask.
//  - selected_attention: every (query, kv head) has its own key set (the
//    tokens of its selected blocks), shared by the kv head's query heads:
//    those rows are gathered once into a contiguous block and the group's
//    heads run as small matrix products over it, so only select_k * block
//    keys per query are ever touched.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/sparse_attention.cpp"
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

#include "ops/check.h"
#include "ops/sparse_attention.h"
#include "simd/isa.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {

namespace {

using ArrMap = Eigen::Map<Eigen::ArrayXf>;

// Below this much work (~multiply-adds) a loop runs on one thread.
constexpr double kMinParallelWork = double(1 << 16);

struct Heads {
  int64_t batch, tq, tk, hq, hkv, d, group, ldq, ldk;
};

Heads check_heads(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                  int64_t n_heads, int64_t n_kv_heads) {
  op_check(q.defined() && k.defined() && v.defined(), op, "q, k and v must be defined");
  op_check(q.rank() == 3 && k.rank() == 3 && v.rank() == 3, op,
           "q, k, v must be (B, T, H*D), got " + q.shape().str() + ", " + k.shape().str() + ", " +
               v.shape().str());
  op_check(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, op,
           "n_heads = " + std::to_string(n_heads) +
               " must be a positive multiple of n_kv_heads = " + std::to_string(n_kv_heads));
  op_check(q.cols() % n_heads == 0, op,
           "q " + q.shape().str() + " last dim is not divisible by n_heads");
  const int64_t d = q.cols() / n_heads;
  op_check(k.cols() == n_kv_heads * d && v.shape() == k.shape() && q.dim(0) == k.dim(0), op,
           "k and v must be (B, Tk, n_kv_heads * " + std::to_string(d) + "), got " +
               k.shape().str() + ", " + v.shape().str() + " (q " + q.shape().str() + ")");
  return Heads{q.dim(0), q.dim(1), k.dim(1), n_heads, n_kv_heads, d, n_heads / n_kv_heads,
               q.cols(), k.cols()};
}

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Stable softmax of row[0, n) in place; row[n, len) = 0. Returns the
// logsumexp (0 for n == 0, whose row is all zeros).
float softmax_prefix(float* row, int64_t n, int64_t len) {
  if (n < len) std::memset(row + n, 0, sizeof(float) * size_t(len - n));
  if (n == 0) return 0.0f;
  ArrMap seg(row, n);
  const float mx = seg.maxCoeff();
  seg = (seg - mx).exp();
  const float sum = seg.sum();
  seg *= 1.0f / sum;
  return mx + std::log(sum);
}

// Backward's recompute: row[0, n) = exp(row - lse), row[n, len) = 0.
void probs_prefix(float* row, int64_t n, int64_t len, float lse) {
  if (n < len) std::memset(row + n, 0, sizeof(float) * size_t(len - n));
  if (n == 0) return;
  ArrMap seg(row, n);
  seg = (seg - lse).exp();
}

using MatRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<MatRM>;
using CMatMap = Eigen::Map<const MatRM>;

// Copies the key and value rows of the selected blocks (ids before the first
// -1) of one kv head (rows at stride ld) into contiguous ks, vs (n x d).
// Returns n, the number of gathered rows.
int64_t gather_selected(const float* k, const float* v, int64_t ld, int64_t d, const int32_t* sel,
                        int64_t select_k, int64_t block, float* ks, float* vs) {
  int64_t n = 0;
  for (int64_t m = 0; m < select_k && sel[m] >= 0; ++m)
    for (int64_t t = 0; t < block; ++t, ++n) {
      const int64_t r = (int64_t(sel[m]) * block + t) * ld;
      std::memcpy(ks + n * d, k + r, sizeof(float) * size_t(d));
      std::memcpy(vs + n * d, v + r, sizeof(float) * size_t(d));
    }
  return n;
}

// Adds gathered gradient rows dks, dvs back into dk, dv (either may be null).
void scatter_selected(float* dk, float* dv, int64_t ld, int64_t d, const int32_t* sel,
                      int64_t select_k, int64_t block, const float* dks, const float* dvs) {
  int64_t n = 0;
  for (int64_t m = 0; m < select_k && sel[m] >= 0; ++m)
    for (int64_t t = 0; t < block; ++t, ++n) {
      const int64_t r = (int64_t(sel[m]) * block + t) * ld;
      if (dk) axpy(1.0f, dks + n * d, dk + r, d);
      if (dv) axpy(1.0f, dvs + n * d, dv + r, d);
    }
}

}  // namespace

// ---------------------------------------------------------------- pooling

Tensor BlockMeanPool(const Tensor& x, int64_t block) {
  op_check(x.defined() && x.rank() == 3, "block_mean_pool",
           "x must be (B, T, W), got " + (x.defined() ? x.shape().str() : "undefined"));
  op_check(block > 0, "block_mean_pool", "block must be > 0");
  const int64_t B = x.dim(0), T = x.dim(1), W = x.dim(2), nc = T / block;
  Graph& g = current_graph();
  Tensor y = g.empty(Shape{B, nc, W}, g.needs_grad({x}));
  if (y.numel() == 0) return y;
  const float inv = 1.0f / float(block);
  const float* xd = x.data();
  float* yd = y.data();
  parallel_for(
      B * nc,
      [&](int64_t bj) {
        const int64_t b = bj / nc, j = bj % nc;
        const float* s = xd + (b * T + j * block) * W;
        float* o = yd + bj * W;
        std::memcpy(o, s, sizeof(float) * size_t(W));
        for (int64_t t = 1; t < block; ++t) axpy(1.0f, s + t * W, o, W);
#pragma omp simd
        for (int64_t c = 0; c < W; ++c) o[c] *= inv;
      },
      std::max<int64_t>(1, 4096 / std::max<int64_t>(1, block * W)));
  if (y.requires_grad()) {
    g.on_backward([=] {
      const float* dy = y.grad();
      if (!dy || !x.requires_grad()) return;
      float* dx = current_graph().grad(x);
      parallel_for(B * nc, [&](int64_t bj) {
        const int64_t b = bj / nc, j = bj % nc;
        float* d = dx + (b * T + j * block) * W;
        for (int64_t t = 0; t < block; ++t) axpy(inv, dy + bj * W, d + t * W, W);
      });
    });
  }
  return y;
}

// ---------------------------------------------------------------- compressed

Tensor CompressedAttention(const Tensor& q, const Tensor& kc, const Tensor& vc, int64_t n_heads,
                           int64_t n_kv_heads, float scale, int64_t block, int64_t q_offset,
                           int64_t select_k, int32_t* selected) {
  const Heads gm = check_heads("compressed_attention", q, kc, vc, n_heads, n_kv_heads);
  op_check(block > 0 && q_offset >= 0, "compressed_attention",
           "block must be > 0 and q_offset >= 0");
  op_check(!selected || select_k > 0, "compressed_attention", "select_k must be > 0");
  const int64_t nc = gm.tk, ld = std::max<int64_t>(nc, 1);
  Graph& g = current_graph();
  Tensor y = g.empty(q.shape(), nc > 0 && g.needs_grad({q, kc, vc}));
  if (y.numel() == 0) return y;
  // Complete blocks of query row i.
  auto visible = [=](int64_t i) { return std::min(nc, (q_offset + i + 1) / block); };
  const bool save = y.requires_grad();
  float* lse = save ? g.alloc(gm.batch * gm.hq * gm.tq) : nullptr;
  const int64_t n_tasks = gm.batch * gm.hkv;
  const int64_t work = gm.batch * gm.hq * gm.tq * std::max<int64_t>(nc, 1) * gm.d;
  const int nt = task_threads(n_tasks, double(work), kMinParallelWork);
  // Per thread: probabilities of the group's heads (group x Tq x ld) and one
  // row of selection scores; block ids to rank.
  const int64_t per = gm.group * gm.tq * ld + ld;
  float* scratch = g.alloc(nt * per);
  int32_t* ids = g.alloc_as<int32_t>(nt * ld);
  const float *qd = q.data(), *kd = kc.data(), *vd = vc.data();
  float* od = y.data();
  run_tasks(n_tasks, nt, [&](int64_t task, int tid) {
    const int64_t b = task / gm.hkv, kvh = task % gm.hkv;
    float* pbuf = scratch + tid * per;
    const float* kb = kd + b * nc * gm.ldk + kvh * gm.d;
    const float* vb = vd + b * nc * gm.ldk + kvh * gm.d;
    for (int64_t gi = 0; gi < gm.group; ++gi) {
      const int64_t h = kvh * gm.group + gi;
      float* p = pbuf + gi * gm.tq * ld;
      const int64_t qo = b * gm.tq * gm.ldq + h * gm.d;
      if (nc == 0) {
        for (int64_t i = 0; i < gm.tq; ++i)
          std::memset(od + qo + i * gm.ldq, 0, sizeof(float) * size_t(gm.d));
        continue;
      }
      // P = softmax over complete blocks of scale * Q_h Kcᵀ; O_h = P Vc.
      gemm(false, true, gm.tq, nc, gm.d, scale, qd + qo, gm.ldq, kb, gm.ldk, 0.0f, p, ld);
      for (int64_t i = 0; i < gm.tq; ++i) {
        const float l = softmax_prefix(p + i * ld, visible(i), nc);
        if (save) lse[(b * gm.hq + h) * gm.tq + i] = l;
      }
      gemm(false, false, gm.tq, gm.d, nc, 1.0f, p, ld, vb, gm.ldk, 0.0f, od + qo, gm.ldq);
    }
    if (!selected) return;
    float* score = pbuf + gm.group * gm.tq * ld;
    int32_t* idx = ids + tid * ld;
    for (int64_t i = 0; i < gm.tq; ++i) {
      int32_t* sel = selected + ((b * gm.tq + i) * gm.hkv + kvh) * select_k;
      std::fill(sel, sel + select_k, -1);
      const int64_t n = visible(i);
      if (n <= select_k) {
        for (int64_t j = 0; j < n; ++j) sel[j] = int32_t(j);
        continue;
      }
      // Rank blocks by the probability mass the group's heads give them.
      for (int64_t j = 0; j < n; ++j) {
        float s = 0.0f;
        for (int64_t gi = 0; gi < gm.group; ++gi) s += pbuf[(gi * gm.tq + i) * ld + j];
        score[j] = s;
        idx[j] = int32_t(j);
      }
      std::partial_sort(idx, idx + select_k, idx + n, [&](int32_t a, int32_t c) {
        return score[a] > score[c] || (score[a] == score[c] && a < c);
      });
      std::sort(idx, idx + select_k);
      std::copy(idx, idx + select_k, sel);
    }
  });
  if (!save) return y;

  g.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    float* dq = gg.grad_if_required(q);
    float* dk = gg.grad_if_required(kc);
    float* dv = gg.grad_if_required(vc);
    const int bnt = task_threads(n_tasks, 2.0 * double(work), kMinParallelWork);
    const int64_t bper = 2 * gm.tq * ld;  // P and dP/dS of one head
    float* bscratch = gg.alloc(bnt * bper);
    const float *qd = q.data(), *kd = kc.data(), *vd = vc.data();
    run_tasks(n_tasks, bnt, [&](int64_t task, int tid) {
      const int64_t b = task / gm.hkv, kvh = task % gm.hkv;
      float* p = bscratch + tid * bper;
      float* ds = p + gm.tq * ld;
      const int64_t ko = b * nc * gm.ldk + kvh * gm.d;
      for (int64_t h = kvh * gm.group; h < (kvh + 1) * gm.group; ++h) {
        const int64_t qo = b * gm.tq * gm.ldq + h * gm.d;
        gemm(false, true, gm.tq, nc, gm.d, scale, qd + qo, gm.ldq, kd + ko, gm.ldk, 0.0f, p, ld);
        for (int64_t i = 0; i < gm.tq; ++i)
          probs_prefix(p + i * ld, visible(i), nc, lse[(b * gm.hq + h) * gm.tq + i]);
        // dVc += Pᵀ dO
        if (dv)
          gemm(true, false, nc, gm.d, gm.tq, 1.0f, p, ld, dy + qo, gm.ldq, 1.0f, dv + ko, gm.ldk);
        if (!dq && !dk) continue;
        // dP = dO Vcᵀ; dS = P * (dP - rowsum(P * dP)) (masked entries have P = 0).
        gemm(false, true, gm.tq, nc, gm.d, 1.0f, dy + qo, gm.ldq, vd + ko, gm.ldk, 0.0f, ds, ld);
        for (int64_t i = 0; i < gm.tq; ++i) {
          float* dr = ds + i * ld;
          const float* pr = p + i * ld;
          const float s = dot(pr, dr, nc);
#pragma omp simd
          for (int64_t j = 0; j < nc; ++j) dr[j] = pr[j] * (dr[j] - s);
        }
        // dQ_h += scale dS Kc ;  dKc += scale dSᵀ Q_h
        if (dq)
          gemm(false, false, gm.tq, gm.d, nc, scale, ds, ld, kd + ko, gm.ldk, 1.0f, dq + qo,
               gm.ldq);
        if (dk)
          gemm(true, false, nc, gm.d, gm.tq, scale, ds, ld, qd + qo, gm.ldq, 1.0f, dk + ko, gm.ldk);
      }
    });
  });
  return y;
}

// ---------------------------------------------------------------- selected

Tensor SelectedAttention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t n_heads,
                         int64_t n_kv_heads, float scale, int64_t block, const int32_t* selected,
                         int64_t select_k) {
  const Heads gm = check_heads("selected_attention", q, k, v, n_heads, n_kv_heads);
  op_check(block > 0 && select_k > 0 && selected, "selected_attention",
           "block and select_k must be > 0 and the selection given");
  const int64_t n_sel = gm.batch * gm.tq * gm.hkv * select_k;
  for (int64_t s = 0; s < n_sel; ++s)
    op_check(selected[s] < 0 || (int64_t(selected[s]) + 1) * block <= gm.tk, "selected_attention",
             "selected block " + std::to_string(selected[s]) + " lies past the " +
                 std::to_string(gm.tk) + " keys");
  Graph& g = current_graph();
  Tensor y = g.empty(q.shape(), g.needs_grad({q, k, v}));
  if (y.numel() == 0) return y;
  const bool save = y.requires_grad();
  float* lse = save ? g.alloc(gm.batch * gm.hq * gm.tq) : nullptr;
  const int64_t max_keys = select_k * block, G = gm.group, D = gm.d;
  const int64_t n_tasks = gm.batch * gm.hkv;
  const int64_t work = gm.batch * gm.hq * gm.tq * max_keys * D;
  const int nt = task_threads(n_tasks, double(work), kMinParallelWork);
  // Per thread: the gathered keys and values (max_keys x D each) and the
  // group's scores (G x max_keys).
  const int64_t per = 2 * max_keys * D + G * max_keys;
  float* scratch = g.alloc(nt * per);
  const float *qd = q.data(), *kd = k.data(), *vd = v.data();
  float* od = y.data();
  run_tasks(n_tasks, nt, [&](int64_t task, int tid) {
    const int64_t b = task / gm.hkv, kvh = task % gm.hkv;
    float* ks = scratch + tid * per;
    float* vs = ks + max_keys * D;
    float* sc = vs + max_keys * D;
    const int64_t kvo = b * gm.tk * gm.ldk + kvh * D;
    for (int64_t i = 0; i < gm.tq; ++i) {
      const int32_t* sel = selected + ((b * gm.tq + i) * gm.hkv + kvh) * select_k;
      // The group's query heads are adjacent: a G x D block of the row.
      const int64_t qo = (b * gm.tq + i) * gm.ldq + kvh * G * D;
      MatMap og(od + qo, G, D);
      const int64_t n =
          gather_selected(kd + kvo, vd + kvo, gm.ldk, D, sel, select_k, block, ks, vs);
      if (n == 0) {
        og.setZero();
        if (save)
          for (int64_t h = kvh * G; h < (kvh + 1) * G; ++h) lse[(b * gm.hq + h) * gm.tq + i] = 0;
        continue;
      }
      CMatMap qg(qd + qo, G, D), km(ks, n, D), vm(vs, n, D);
      MatMap s(sc, G, n);
      s.noalias() = scale * (qg * km.transpose());
      for (int64_t r = 0; r < G; ++r) {
        const float l = softmax_prefix(sc + r * n, n, n);
        if (save) lse[(b * gm.hq + kvh * G + r) * gm.tq + i] = l;
      }
      og.noalias() = s * vm;
    }
  });
  if (!save) return y;

  g.on_backward([=] {
    const float* dy = y.grad();
    if (!dy) return;
    Graph& gg = current_graph();
    float* dq = gg.grad_if_required(q);
    float* dk = gg.grad_if_required(k);
    float* dv = gg.grad_if_required(v);
    const int bnt = task_threads(n_tasks, 2.0 * double(work), kMinParallelWork);
    // Per thread: gathered K, V and their gradients (max_keys x D each), P and dP (G x max_keys).
    const int64_t bper = 4 * max_keys * D + 2 * G * max_keys;
    float* bscratch = gg.alloc(bnt * bper);
    const float *qd = q.data(), *kd = k.data(), *vd = v.data();
    run_tasks(n_tasks, bnt, [&](int64_t task, int tid) {
      const int64_t b = task / gm.hkv, kvh = task % gm.hkv;
      float* ks = bscratch + tid * bper;
      float* vs = ks + max_keys * D;
      float* dks = vs + max_keys * D;
      float* dvs = dks + max_keys * D;
      float* pb = dvs + max_keys * D;
      float* dpb = pb + G * max_keys;
      const int64_t kvo = b * gm.tk * gm.ldk + kvh * D;
      for (int64_t i = 0; i < gm.tq; ++i) {
        const int32_t* sel = selected + ((b * gm.tq + i) * gm.hkv + kvh) * select_k;
        const int64_t n =
            gather_selected(kd + kvo, vd + kvo, gm.ldk, D, sel, select_k, block, ks, vs);
        if (n == 0) continue;
        const int64_t qo = (b * gm.tq + i) * gm.ldq + kvh * G * D;
        CMatMap qg(qd + qo, G, D), dog(dy + qo, G, D), km(ks, n, D), vm(vs, n, D);
        MatMap p(pb, G, n), ds(dpb, G, n);
        // P = exp(scale Q Kᵀ - lse), dP = dO Vᵀ, dS = P * (dP - rowsum(P * dP)).
        p.noalias() = scale * (qg * km.transpose());
        for (int64_t r = 0; r < G; ++r)
          probs_prefix(pb + r * n, n, n, lse[(b * gm.hq + kvh * G + r) * gm.tq + i]);
        ds.noalias() = dog * vm.transpose();
        for (int64_t r = 0; r < G; ++r) {
          const float sdot = dot(pb + r * n, dpb + r * n, n);
          ds.row(r) = (p.row(r).array() * (ds.row(r).array() - sdot)).matrix();
        }
        if (dq) MatMap(dq + qo, G, D).noalias() += scale * (ds * km);
        if (dk) MatMap(dks, n, D).noalias() = scale * (ds.transpose() * qg);
        if (dv) MatMap(dvs, n, D).noalias() = p.transpose() * dog;
        scatter_selected(dk ? dk + kvo : nullptr, dv ? dv + kvo : nullptr, gm.ldk, D, sel, select_k,
                         block, dks, dvs);
      }
    });
  });
  return y;
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(BlockMeanPool);
HWY_EXPORT(CompressedAttention);
HWY_EXPORT(SelectedAttention);

Tensor block_mean_pool(const Tensor& x, int64_t block) {
  return BL_DISPATCH(BlockMeanPool)(x, block);
}

Tensor compressed_attention(const Tensor& q, const Tensor& kc, const Tensor& vc, int64_t n_heads,
                            int64_t n_kv_heads, float scale, int64_t block, int64_t q_offset,
                            int64_t select_k, int32_t* selected) {
  return BL_DISPATCH(CompressedAttention)(q, kc, vc, n_heads, n_kv_heads, scale, block, q_offset,
                                          select_k, selected);
}

Tensor selected_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t n_heads,
                          int64_t n_kv_heads, float scale, int64_t block, const int32_t* selected,
                          int64_t select_k) {
  return BL_DISPATCH(SelectedAttention)(q, k, v, n_heads, n_kv_heads, scale, block, selected,
                                        select_k);
}

}  // namespace bl
#endif  // HWY_ONCE
