// Sparse attention (sparse_gqa): the pooling, compressed (with block
// selection) and selected-block kernels against plain double references and
// finite differences; the component's parameters, FLOPs, gradients, cached
// decoding equal to the full pass, validation and training.
#include "ops/sparse_attention.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <vector>

#include "component_checks.h"
#include "core/attention/sparse_gqa.h"
#include "core/block.h"
#include "core/config.h"
#include "core/position/none.h"
#include "gradcheck.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"

namespace bl {
namespace {

struct Dims {
  int64_t batch, tq, tk, hq, hkv, d;
};

float at(const Parameter& p, int64_t i) {
  return p.data()[i];
}

// Softmax-weighted sum of value rows `rows` for query vector qi (double).
void attend(const float* qi, const float* k, const float* v, int64_t ld, int64_t d,
            const std::vector<int64_t>& rows, double scale, double* out,
            std::vector<double>* p_out) {
  std::vector<double> s;
  double mx = -1e300, sum = 0;
  for (int64_t r : rows) {
    double acc = 0;
    for (int64_t c = 0; c < d; ++c) acc += double(qi[c]) * k[r * ld + c];
    s.push_back(scale * acc);
    mx = std::max(mx, s.back());
  }
  for (double& x : s) sum += (x = std::exp(x - mx));
  for (double& x : s) x /= sum;
  for (int64_t c = 0; c < d; ++c) out[c] = 0;
  for (size_t j = 0; j < rows.size(); ++j)
    for (int64_t c = 0; c < d; ++c) out[c] += s[j] * v[rows[j] * ld + c];
  if (p_out) *p_out = s;
}

TEST(BlockMeanPool, MatchesMeansAndFiniteDifferences) {
  Rng rng(2);
  auto x = test::make_input("x", Shape{2, 11, 3}, rng);  // 3 complete blocks of 3, 2 rows left over
  {
    NoGradGuard ng;
    Tensor y = block_mean_pool(x->tensor(), 3);
    ASSERT_EQ(y.shape(), (Shape{2, 3, 3}));
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t c = 0; c < 3; ++c) {
          double m = 0;
          for (int64_t t = 0; t < 3; ++t) m += at(*x, (b * 11 + j * 3 + t) * 3 + c) / 3.0;
          EXPECT_NEAR(y.data()[(b * 3 + j) * 3 + c], m, 1e-6);
        }
    current_graph().clear();
  }
  EXPECT_TRUE(test::grad_check([&] { return block_mean_pool(x->tensor(), 3); }, {x.get()}));
}

TEST(CompressedAttention, MatchesNaiveAttentionAndTopKSelection) {
  for (Dims s : {Dims{2, 13, 6, 4, 2, 5}, Dims{1, 3, 7, 2, 1, 4}}) {
    const int64_t block = 2, select_k = 2;
    const int64_t q_offset = s.tq == 3 ? 11 : 0;  // decoding-like: 3 queries after 11 tokens
    Rng rng(5);
    auto q = test::make_input("q", Shape{s.batch, s.tq, s.hq * s.d}, rng);
    auto kc = test::make_input("kc", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
    auto vc = test::make_input("vc", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
    const float scale = 0.7f;
    std::vector<int32_t> sel(size_t(s.batch * s.tq * s.hkv * select_k));
    NoGradGuard ng;
    Tensor y = compressed_attention(q->tensor(), kc->tensor(), vc->tensor(), s.hq, s.hkv, scale,
                                    block, q_offset, select_k, sel.data());
    const int64_t g = s.hq / s.hkv, ldq = s.hq * s.d, ldk = s.hkv * s.d;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t i = 0; i < s.tq; ++i) {
        // Block j is complete for position p when (j + 1) * block <= p + 1.
        std::vector<int64_t> rows;
        for (int64_t j = 0; j < s.tk && (j + 1) * block <= q_offset + i + 1; ++j) rows.push_back(j);
        for (int64_t kh = 0; kh < s.hkv; ++kh) {
          std::vector<double> mass(rows.size(), 0.0);
          for (int64_t h = kh * g; h < (kh + 1) * g; ++h) {
            std::vector<double> out(size_t(s.d)), p;
            const float* yi = y.data() + (b * s.tq + i) * ldq + h * s.d;
            if (rows.empty()) {
              for (int64_t c = 0; c < s.d; ++c) EXPECT_EQ(yi[c], 0.0f);
              continue;
            }
            attend(q->data() + (b * s.tq + i) * ldq + h * s.d,
                   kc->data() + b * s.tk * ldk + kh * s.d, vc->data() + b * s.tk * ldk + kh * s.d,
                   ldk, s.d, rows, scale, out.data(), &p);
            for (int64_t c = 0; c < s.d; ++c) EXPECT_NEAR(yi[c], out[size_t(c)], 1e-5);
            for (size_t j = 0; j < rows.size(); ++j) mass[j] += p[j];
          }
          // Expected selection: top select_k by summed probability, in id order.
          std::vector<int32_t> ids(rows.size());
          std::iota(ids.begin(), ids.end(), 0);
          std::stable_sort(ids.begin(), ids.end(),
                           [&](int32_t a, int32_t c) { return mass[size_t(a)] > mass[size_t(c)]; });
          ids.resize(std::min<size_t>(ids.size(), size_t(select_k)));
          std::sort(ids.begin(), ids.end());
          ids.resize(size_t(select_k), -1);
          const int32_t* got = sel.data() + ((b * s.tq + i) * s.hkv + kh) * select_k;
          EXPECT_EQ(std::vector<int32_t>(got, got + select_k), ids) << "b " << b << " i " << i;
        }
      }
    current_graph().clear();
  }
}

TEST(CompressedAttention, GradientsMatchFiniteDifferences) {
  Rng rng(8);
  auto q = test::make_input("q", Shape{2, 9, 4 * 3}, rng);
  auto kc = test::make_input("kc", Shape{2, 4, 2 * 3}, rng);
  auto vc = test::make_input("vc", Shape{2, 4, 2 * 3}, rng);
  for (int64_t q_offset : {0, 2}) {
    EXPECT_TRUE(test::grad_check(
        [&] {
          return compressed_attention(q->tensor(), kc->tensor(), vc->tensor(), 4, 2, 0.6f, 2,
                                      q_offset, 0, nullptr);
        },
        {q.get(), kc.get(), vc.get()}))
        << "q_offset " << q_offset;
  }
}

// A selection of complete blocks per (b, i, kv head): a few ids, -1 padded.
std::vector<int32_t> some_selection(const Dims& s, int64_t block, int64_t select_k,
                                    int64_t q_offset) {
  std::vector<int32_t> sel;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < s.tq; ++i)
      for (int64_t kh = 0; kh < s.hkv; ++kh) {
        const int64_t complete = (q_offset + i + 1) / block;
        std::vector<int32_t> ids;
        for (int64_t j = (b + i + kh) % 2; j < complete && int64_t(ids.size()) < select_k; j += 2)
          ids.push_back(int32_t(j));
        ids.resize(size_t(select_k), -1);
        sel.insert(sel.end(), ids.begin(), ids.end());
      }
  return sel;
}

TEST(SelectedAttention, MatchesNaiveAttentionOverSelectedTokens) {
  const Dims s{2, 6, 12, 4, 2, 5};
  const int64_t block = 3, select_k = 2, q_offset = 6;  // 6 queries after 6 tokens, keys 0..11
  Rng rng(6);
  auto q = test::make_input("q", Shape{s.batch, s.tq, s.hq * s.d}, rng);
  auto k = test::make_input("k", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
  auto v = test::make_input("v", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
  std::vector<int32_t> sel = some_selection(s, block, select_k, q_offset);
  NoGradGuard ng;
  Tensor y = selected_attention(q->tensor(), k->tensor(), v->tensor(), s.hq, s.hkv, 0.5f, block,
                                sel.data(), select_k);
  const int64_t g = s.hq / s.hkv, ldq = s.hq * s.d, ldk = s.hkv * s.d;
  int64_t nonempty = 0;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < s.tq; ++i)
      for (int64_t h = 0; h < s.hq; ++h) {
        const int64_t kh = h / g;
        const int32_t* si = sel.data() + ((b * s.tq + i) * s.hkv + kh) * select_k;
        std::vector<int64_t> rows;
        for (int64_t m = 0; m < select_k && si[m] >= 0; ++m)
          for (int64_t t = 0; t < block; ++t) rows.push_back(si[m] * block + t);
        const float* yi = y.data() + (b * s.tq + i) * ldq + h * s.d;
        std::vector<double> out(size_t(s.d), 0.0);
        if (!rows.empty()) {
          ++nonempty;
          attend(q->data() + (b * s.tq + i) * ldq + h * s.d, k->data() + b * s.tk * ldk + kh * s.d,
                 v->data() + b * s.tk * ldk + kh * s.d, ldk, s.d, rows, 0.5, out.data(), nullptr);
        }
        for (int64_t c = 0; c < s.d; ++c) EXPECT_NEAR(yi[c], out[size_t(c)], 1e-5);
      }
  EXPECT_GT(nonempty, 0);
  // A block past the keys is refused.
  std::vector<int32_t> bad(sel.size(), 4);
  EXPECT_THROW(selected_attention(q->tensor(), k->tensor(), v->tensor(), s.hq, s.hkv, 0.5f, block,
                                  bad.data(), select_k),
               std::invalid_argument);
  current_graph().clear();
}

TEST(SelectedAttention, GradientsMatchFiniteDifferences) {
  const Dims s{2, 5, 10, 2, 1, 4};
  const int64_t block = 2, select_k = 2, q_offset = 5;
  Rng rng(9);
  auto q = test::make_input("q", Shape{s.batch, s.tq, s.hq * s.d}, rng);
  auto k = test::make_input("k", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
  auto v = test::make_input("v", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
  std::vector<int32_t> sel = some_selection(s, block, select_k, q_offset);
  EXPECT_TRUE(test::grad_check(
      [&] {
        return selected_attention(q->tensor(), k->tensor(), v->tensor(), s.hq, s.hkv, 0.8f, block,
                                  sel.data(), select_k);
      },
      {q.get(), k.get(), v.get()}));
}

// Output and input gradients of f (seeded with fixed weights) at a thread count.
std::vector<float> run_with_threads(int threads, const std::function<Tensor()>& f,
                                    const std::vector<Parameter*>& inputs) {
  set_num_threads(threads);
  Graph& g = current_graph();
  for (Parameter* p : inputs) p->zero_grad();
  Tensor y = f();
  std::vector<float> out(y.data(), y.data() + y.numel());
  float* gy = g.grad(y);
  for (int64_t i = 0; i < y.numel(); ++i) gy[i] = float((i * 37) % 11) - 5.0f;
  g.run_tape();
  g.clear();
  for (Parameter* p : inputs) out.insert(out.end(), p->grad(), p->grad() + p->numel());
  return out;
}

TEST(SparseKernels, SameResultWithOneOrTwoThreads) {
  // Large enough that both kernels take their parallel path with 2 threads.
  const int before = num_threads();
  Rng rng(3);
  auto q = test::make_input("q", Shape{2, 128, 4 * 32}, rng);
  auto k = test::make_input("k", Shape{2, 128, 2 * 32}, rng);
  auto v = test::make_input("v", Shape{2, 128, 2 * 32}, rng);
  auto kc = test::make_input("kc", Shape{2, 32, 2 * 32}, rng);
  auto vc = test::make_input("vc", Shape{2, 32, 2 * 32}, rng);
  std::vector<int32_t> sel(2 * 128 * 2 * 4);
  auto comp = [&] {
    return compressed_attention(q->tensor(), kc->tensor(), vc->tensor(), 4, 2, 0.3f, 4, 0, 4,
                                sel.data());
  };
  auto picked = [&] {
    return selected_attention(q->tensor(), k->tensor(), v->tensor(), 4, 2, 0.3f, 4, sel.data(), 4);
  };
  std::vector<Parameter*> cin{q.get(), kc.get(), vc.get()}, sin{q.get(), k.get(), v.get()};
  auto c1 = run_with_threads(1, comp, cin);
  const std::vector<int32_t> sel1 = sel;
  auto s1 = run_with_threads(1, picked, sin);
  auto c2 = run_with_threads(2, comp, cin);
  EXPECT_EQ(sel, sel1);
  auto s2 = run_with_threads(2, picked, sin);
  set_num_threads(before);
  ASSERT_EQ(c1.size(), c2.size());
  for (size_t i = 0; i < c1.size(); ++i) ASSERT_NEAR(c1[i], c2[i], 1e-5f) << "compressed " << i;
  for (size_t i = 0; i < s1.size(); ++i) ASSERT_NEAR(s1[i], s2[i], 1e-5f) << "selected " << i;
  EXPECT_GT(std::count(sel.begin(), sel.end(), -1), 0);  // early queries: fewer blocks
  EXPECT_GT(std::count_if(sel.begin(), sel.end(), [](int32_t s) { return s > 3; }), 0);
}

// ---------------------------------------------------------------- component

BlockConfig sparse_block(int64_t ratio, int64_t select_k, std::optional<int64_t> window,
                         int64_t n_kv_heads = 2) {
  BlockConfig c;
  c.attention = "sparse_gqa";
  c.ffn = "gated";
  c.norm = "rms_norm";
  c.position = "rope";
  c.d_model = 16;
  c.n_heads = 4;  // head_dim 4
  c.n_kv_heads = n_kv_heads;
  c.d_ff = 24;
  c.sparse_compress_ratio = ratio;
  c.sparse_select_k = select_k;
  c.window_size = window;
  c.max_seq_len = 64;
  return c;
}

TEST(SparseGQA, ParameterCountsAndFlopsByHand) {
  // Mean pooling adds no parameters: exactly GQA's q 16*16+16, k and v 16*8+8, o 16*16+16.
  SparseGQA a(sparse_block(4, 2, 8));
  EXPECT_EQ(a.num_parameters(), 272 + 136 + 136 + 272);
  // seq_len 100: 25 compressed blocks, 2 * 4 selected tokens, window 8; H * D = 16.
  // 4 * 16 * (25 + 8 + 8) for the three attentions, 4 * 25 to rank blocks,
  // 2 * (2 * 4) * (1 + 1/4) to pool K and V.
  EXPECT_DOUBLE_EQ(a.mixing_flops_per_token(100), 4.0 * 16 * 41 + 100 + 20);
  // Short contexts: fewer blocks than select_k, window longer than the context;
  // window_size unset = sparse_compress_ratio.
  SparseGQA b(sparse_block(4, 8, {}));
  EXPECT_DOUBLE_EQ(b.mixing_flops_per_token(10), 4.0 * 16 * (2 + 8 + 4) + 4 * 2 + 20);
  EXPECT_DOUBLE_EQ(a.mixing_flops_per_token(5), 4.0 * 16 * (1 + 4 + 5) + 4 * 1 + 20);
}

// The three branches written out in double precision from the module's
// weights (position none): mean-pooled complete blocks, the top select_k of
// them by group-summed probability attended token by token, and the window.
std::vector<double> naive_sparse(SparseGQA& m, const BlockConfig& c, const Parameter& x) {
  std::map<std::string, Parameter*> w;
  for (auto& [name, p] : m.named_parameters()) w[name] = p;
  const int64_t B = x.shape()[0], T = x.shape()[1], d = c.d_model, H = c.n_heads;
  const int64_t Hkv = c.effective_n_kv_heads(), D = c.head_dim(), G = H / Hkv;
  const int64_t r = *c.sparse_compress_ratio, K = *c.sparse_select_k;
  const int64_t win = c.window_size.value_or(r);
  const double scale = 1.0 / std::sqrt(double(D));
  auto lin = [&](const char* n, const double* in, int64_t n_in) {
    const Parameter* W = w[std::string(n) + ".weight"];
    const Parameter* bias =
        w.count(std::string(n) + ".bias") ? w[std::string(n) + ".bias"] : nullptr;
    std::vector<double> y(size_t(W->shape()[0]), 0.0);
    for (int64_t o = 0; o < W->shape()[0]; ++o) {
      for (int64_t i = 0; i < n_in; ++i) y[size_t(o)] += double(W->data()[o * n_in + i]) * in[i];
      if (bias) y[size_t(o)] += bias->data()[o];
    }
    return y;
  };
  // Softmax attention of query vector qv over key/value vectors; returns probabilities.
  auto attend = [&](const double* qv, const std::vector<const double*>& ks,
                    const std::vector<const double*>& vs, double* out) {
    std::vector<double> p;
    if (ks.empty()) return p;
    double mx = -1e300, sum = 0;
    for (const double* kv : ks) {
      double a = 0;
      for (int64_t i = 0; i < D; ++i) a += qv[i] * kv[i];
      p.push_back(scale * a);
      mx = std::max(mx, p.back());
    }
    for (double& e : p) sum += (e = std::exp(e - mx));
    for (double& e : p) e /= sum;
    for (size_t j = 0; j < ks.size(); ++j)
      for (int64_t i = 0; i < D; ++i) out[i] += p[j] * vs[j][i];
    return p;
  };
  std::vector<double> out(size_t(B * T * d));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<std::vector<double>> q, k, v;
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> xt(x.data() + (b * T + t) * d, x.data() + (b * T + t + 1) * d);
      q.push_back(lin("q_proj", xt.data(), d));
      k.push_back(lin("k_proj", xt.data(), d));
      v.push_back(lin("v_proj", xt.data(), d));
    }
    const int64_t nb = T / r;
    std::vector<std::vector<double>> kc(size_t(nb), std::vector<double>(size_t(Hkv * D), 0.0)),
        vc = kc;
    for (int64_t j = 0; j < nb; ++j)
      for (int64_t u = j * r; u < (j + 1) * r; ++u)
        for (int64_t i = 0; i < Hkv * D; ++i) {
          kc[size_t(j)][size_t(i)] += k[size_t(u)][size_t(i)] / double(r);
          vc[size_t(j)][size_t(i)] += v[size_t(u)][size_t(i)] / double(r);
        }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> o(size_t(H * D), 0.0);
      const int64_t complete = (t + 1) / r;
      for (int64_t g = 0; g < Hkv; ++g) {
        std::vector<const double*> cks, cvs, wks, wvs;
        for (int64_t j = 0; j < complete; ++j) {
          cks.push_back(kc[size_t(j)].data() + g * D);
          cvs.push_back(vc[size_t(j)].data() + g * D);
        }
        for (int64_t u = std::max<int64_t>(0, t - win + 1); u <= t; ++u) {
          wks.push_back(k[size_t(u)].data() + g * D);
          wvs.push_back(v[size_t(u)].data() + g * D);
        }
        std::vector<double> mass(static_cast<size_t>(complete), 0.0);
        for (int64_t h = g * G; h < (g + 1) * G; ++h) {
          auto p = attend(q[size_t(t)].data() + h * D, cks, cvs, o.data() + h * D);
          for (size_t j = 0; j < p.size(); ++j) mass[j] += p[j];
          attend(q[size_t(t)].data() + h * D, wks, wvs, o.data() + h * D);
        }
        std::vector<int64_t> order(static_cast<size_t>(complete));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t e) { return mass[size_t(a)] > mass[size_t(e)]; });
        order.resize(std::min<size_t>(order.size(), size_t(K)));
        std::vector<const double*> sks, svs;
        for (int64_t j : order)
          for (int64_t u = j * r; u < (j + 1) * r; ++u) {
            sks.push_back(k[size_t(u)].data() + g * D);
            svs.push_back(v[size_t(u)].data() + g * D);
          }
        for (int64_t h = g * G; h < (g + 1) * G; ++h)
          attend(q[size_t(t)].data() + h * D, sks, svs, o.data() + h * D);
      }
      std::vector<double> y = lin("o_proj", o.data(), H * D);
      std::copy(y.begin(), y.end(), out.begin() + (b * T + t) * d);
    }
  }
  return out;
}

TEST(SparseGQA, FullPassMatchesTheThreeBranchesWrittenOut) {
  // 20 tokens in blocks of 3 (up to 6 complete), 2 selected; windows 4 and the default 3.
  for (BlockConfig c : {sparse_block(3, 2, 4, 2), sparse_block(3, 1, {}, 1)}) {
    c.position = "none";
    SparseGQA m(c);
    Rng rng(31);
    test::randomize(m, rng);
    auto x = test::make_input("x", Shape{2, 20, 16}, rng);
    NoPosition none;
    NoGradGuard ng;
    Tensor y = m.forward(x->tensor(), none, nullptr);
    std::vector<double> ref = naive_sparse(m, c, *x);
    double err = 0;
    for (int64_t i = 0; i < y.numel(); ++i)
      err = std::max(err, std::abs(y.data()[i] - ref[size_t(i)]));
    EXPECT_LT(err, 1e-4) << "select_k " << *c.sparse_select_k;
    current_graph().clear();
  }
}

TEST(SparseGQA, BlockGradientsMatchFiniteDifferences) {
  // select_k covers every complete block here, so a finite-difference step
  // cannot change the (non-differentiable) selection; the ranking itself is
  // checked against the reference in CompressedAttention above.
  // h = 5e-3: at the default 1e-2 the truncation error of one k_proj element
  // (curvature through qk_norm) measured 0.024 (numeric 0.789 / 0.717 / 0.698
  // at h = 2e-2 / 1e-2 / 5e-3, converging on the analytic 0.693).
  test::GradCheckOptions opt;
  opt.h = 5e-3;
  opt.max_checks_per_input = 32;  // ~20 parameters: keeps the test a few seconds
  struct Case {
    int64_t ratio, select_k;
    std::optional<int64_t> window;
    int64_t n_kv;
    bool qk_norm;
  };
  for (Case cs : {Case{2, 3, 2, 2, false}, Case{3, 2, {}, 1, true}}) {
    BlockConfig c = sparse_block(cs.ratio, cs.select_k, cs.window, cs.n_kv);
    c.qk_norm = cs.qk_norm;
    Block block(c);
    Rng rng(12);
    test::randomize(block, rng);
    auto x = test::make_input("x", Shape{2, 6, 16}, rng);
    std::vector<Parameter*> inputs{x.get()};
    for (Parameter* p : block.parameters()) inputs.push_back(p);
    Rng drop(0);
    EXPECT_TRUE(test::grad_check([&] { return block.forward(x->tensor(), nullptr, true, drop); },
                                 inputs, opt))
        << "ratio " << cs.ratio;
  }
}

ModelConfig sparse_model(int64_t ratio, int64_t select_k, std::optional<int64_t> window,
                         int64_t n_kv_heads, bool qk_norm) {
  ModelConfig m;
  m.vocab_size = 19;
  m.n_layers = 2;
  m.block = sparse_block(ratio, select_k, window, n_kv_heads);
  m.block.qk_norm = qk_norm;
  return m;
}

TEST(SparseGQA, CachedDecodingMatchesFullForward) {
  // 24 tokens in blocks of 3 or 4: up to 8 complete blocks, of which 1 or 2 are
  // selected, so the selection really prunes.
  const int64_t T = 24;
  for (ModelConfig cfg : {sparse_model(3, 2, 4, 2, false), sparse_model(4, 1, {}, 1, true),
                          sparse_model(2, 3, 5, 4, false)}) {
    const std::string what = "ratio " + std::to_string(*cfg.block.sparse_compress_ratio);
    EXPECT_LT(test::decode_error(cfg, T, test::one_at_a_time(T)), 1e-4) << what;
    EXPECT_LT(test::decode_error(cfg, T, {5, 7, 1, 11}), 1e-4) << what;
    EXPECT_LT(test::decode_error(cfg, T, {T}), 1e-4) << what;
  }
}

TEST(SparseGQA, SelectionChangesTheOutput) {
  // With select_k below the number of complete blocks the selected branch
  // differs from attending to all of them (the pruning is real).
  auto logits = [](int64_t select_k) {
    ModelConfig cfg = sparse_model(2, select_k, 2, 2, false);
    LanguageModel model(cfg);
    Rng rng(4);
    model.init_weights(rng);
    test::randomize(model, rng, 0.3f);
    std::vector<int32_t> ids;
    for (int i = 0; i < 16; ++i) ids.push_back(int32_t((i * 5 + 1) % 19));
    NoGradGuard ng;
    Tensor y = model.forward(Tokens{ids.data(), Shape{1, 16}});
    std::vector<float> out(y.data(), y.data() + y.numel());
    current_graph().clear();
    return out;
  };
  auto all = logits(8), one = logits(1), all2 = logits(100);
  double d1 = 0, d2 = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    d1 = std::max(d1, double(std::abs(all[i] - one[i])));
    d2 = std::max(d2, double(std::abs(all[i] - all2[i])));
  }
  EXPECT_GT(d1, 1e-3);
  EXPECT_LT(d2, 1e-5);  // select_k >= number of blocks: the same computation
}

TEST(SparseGQA, ValidationRulesNameTheField) {
  auto errors = [](const BlockConfig& b) {
    ModelConfig m;
    m.vocab_size = 19;
    m.n_layers = 1;
    m.block = b;
    std::string s;
    for (auto& e : validation_errors(m)) s += e + "\n";
    return s;
  };
  using ::testing::HasSubstr;
  BlockConfig ok = sparse_block(4, 2, 8);
  EXPECT_EQ(errors(ok), "");
  BlockConfig b = ok;
  b.window_size.reset();
  EXPECT_EQ(errors(b), "");  // window defaults to sparse_compress_ratio
  b = ok;
  b.sparse_compress_ratio.reset();
  EXPECT_THAT(errors(b),
              HasSubstr("block.sparse_compress_ratio must be set for attention 'sparse_gqa'"));
  b = ok;
  b.sparse_select_k.reset();
  EXPECT_THAT(errors(b), HasSubstr("block.sparse_select_k must be set for attention 'sparse_gqa'"));
  b = ok;
  b.sparse_select_k = -1;
  EXPECT_THAT(errors(b), HasSubstr("block.sparse_select_k (-1) must be > 0 when set"));
  b = ok;
  b.window_size = 0;
  EXPECT_THAT(errors(b), HasSubstr("block.window_size (0) must be >= 1 when set"));
  b = ok;
  b.position = "alibi";
  EXPECT_THAT(errors(b),
              HasSubstr("block.position 'alibi' is not supported by attention 'sparse_gqa'"));
  b = ok;
  b.n_kv_heads = 3;
  EXPECT_THAT(errors(b), HasSubstr("block.n_heads (4) must be divisible by block.n_kv_heads (3)"));
  b = ok;
  b.sparse_select_k.reset();
  EXPECT_THROW(SparseGQA s(b), std::invalid_argument);
}

TEST(SparseGQA, RegistryListsItsFields) {
  const auto& e = attention_registry().entry("sparse_gqa");
  EXPECT_EQ(e.fields,
            (std::vector<std::string>{"n_kv_heads", "qk_norm", "sparse_compress_ratio",
                                      "sparse_select_k", "window_size", "head_dim", "qkv_bias"}));
}

TEST(SparseGQA, SmallModelTrains) {
  ModelConfig cfg = sparse_model(4, 2, 4, 2, false);
  cfg.vocab_size = 64;
  cfg.block.d_model = 32;
  cfg.block.d_ff = 64;
  auto [first, last] = test::train_on_repeated_text(cfg, 30);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace bl
