#include "ops/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gradcheck.h"
#include "ops/elementwise.h"
#include "tensor/gemm.h"

namespace bl {
namespace {

struct Dims {
  int64_t batch, tq, tk, hq, hkv, d;
};

// Plain-loop double reference of attention and (for a given dO) its gradients.
// The masks are checked element by element from their definitions, independent
// of the op's interval logic.
struct AttnRef {
  std::vector<double> out, dq, dk, dv;
};

bool allowed(const AttentionOptions& o, int64_t qp, int64_t kp) {
  if (o.causal && kp > qp) return false;
  if (o.window > 0 && qp - kp >= o.window) return false;
  if (o.chunk > 0 && std::floor(double(qp) / o.chunk) != std::floor(double(kp) / o.chunk))
    return false;
  return true;
}

AttnRef ref_attention(const float* q, const float* k, const float* v, const Dims& s,
                      const AttentionOptions& o, const float* dout) {
  AttnRef r;
  const int64_t ldq = s.hq * s.d, ldk = s.hkv * s.d, group = s.hq / s.hkv;
  r.out.assign(size_t(s.batch * s.tq * ldq), 0);
  r.dq.assign(size_t(s.batch * s.tq * ldq), 0);
  r.dk.assign(size_t(s.batch * s.tk * ldk), 0);
  r.dv.assign(size_t(s.batch * s.tk * ldk), 0);
  std::vector<double> p(static_cast<size_t>(s.tk)), dp(static_cast<size_t>(s.tk));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.hq; ++h) {
      const int64_t kh = h / group;
      for (int64_t i = 0; i < s.tq; ++i) {
        const int64_t qp = o.q_offset + i;
        const float* qi = q + (b * s.tq + i) * ldq + h * s.d;
        double mx = -1e300;
        bool any = false;
        for (int64_t j = 0; j < s.tk; ++j) {
          const int64_t kp = o.k_offset + j;
          if (!allowed(o, qp, kp)) {
            p[size_t(j)] = -1e300;
            continue;
          }
          const float* kj = k + (b * s.tk + j) * ldk + kh * s.d;
          double dot = 0;
          for (int64_t c = 0; c < s.d; ++c) dot += double(qi[c]) * kj[c];
          double sc = o.scale * dot;
          if (o.alibi_slopes) sc -= o.alibi_slopes[h] * double(qp - kp);
          p[size_t(j)] = sc;
          mx = std::max(mx, sc);
          any = true;
        }
        if (!any) continue;  // fully masked row: zero output and gradients
        double z = 0;
        for (int64_t j = 0; j < s.tk; ++j) {
          p[size_t(j)] = p[size_t(j)] == -1e300 ? 0.0 : std::exp(p[size_t(j)] - mx);
          z += p[size_t(j)];
        }
        for (auto& pj : p) pj /= z;
        double* oi = &r.out[size_t((b * s.tq + i) * ldq + h * s.d)];
        for (int64_t j = 0; j < s.tk; ++j)
          for (int64_t c = 0; c < s.d; ++c)
            oi[c] += p[size_t(j)] * v[(b * s.tk + j) * ldk + kh * s.d + c];
        if (!dout) continue;
        const float* doi = dout + (b * s.tq + i) * ldq + h * s.d;
        double rowdot = 0;
        for (int64_t j = 0; j < s.tk; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < s.d; ++c)
            acc += double(doi[c]) * v[(b * s.tk + j) * ldk + kh * s.d + c];
          dp[size_t(j)] = acc;
          rowdot += acc * p[size_t(j)];
        }
        for (int64_t j = 0; j < s.tk; ++j) {
          const double ds = p[size_t(j)] * (dp[size_t(j)] - rowdot);
          for (int64_t c = 0; c < s.d; ++c) {
            const int64_t kidx = (b * s.tk + j) * ldk + kh * s.d + c;
            r.dq[size_t((b * s.tq + i) * ldq + h * s.d + c)] += o.scale * ds * k[kidx];
            r.dk[size_t(kidx)] += o.scale * ds * qi[c];
            r.dv[size_t(kidx)] += p[size_t(j)] * doi[c];
          }
        }
      }
    }
  return r;
}

struct Inputs {
  std::unique_ptr<Parameter> q, k, v, dout;
};

Inputs make_inputs(const Dims& s, uint64_t seed) {
  Rng rng(seed);
  Inputs in;
  in.q = test::make_input("q", Shape{s.batch, s.tq, s.hq * s.d}, rng);
  in.k = test::make_input("k", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
  in.v = test::make_input("v", Shape{s.batch, s.tk, s.hkv * s.d}, rng);
  in.dout = test::make_input("dout", Shape{s.batch, s.tq, s.hq * s.d}, rng);
  return in;
}

void expect_close(const float* got, const std::vector<double>& want, double tol, const char* what) {
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " element " << i;
}

// Fills the (single-block) arena with NaN and rewinds it, so an op reading
// scratch memory it never wrote fails loudly instead of finding stale values
// of an identical earlier call.
void poison_arena() {
  Graph& g = current_graph();
  g.clear();
  if (g.arena_capacity() < (size_t(16) << 20)) {  // make sure one big block exists
    g.alloc(int64_t(4) << 20);
    g.clear();
  }
  const int64_t n = int64_t(g.arena_capacity() / sizeof(float)) - 4096;
  float* junk = g.alloc(n);
  std::fill(junk, junk + n, std::numeric_limits<float>::quiet_NaN());
  g.clear();
}

// Forward and backward against the reference, with q, k, v as parameters
// (gradients accumulate into existing buffers) and as op outputs (the op gets
// fresh, NaN-poisoned gradient buffers and must write every element).
void check_against_ref(const Dims& s, AttentionOptions o, uint64_t seed = 1) {
  Inputs in = make_inputs(s, seed);
  Graph& g = current_graph();
  AttnRef r = ref_attention(in.q->data(), in.k->data(), in.v->data(), s, o, in.dout->data());
  for (bool fresh : {false, true}) {
    SCOPED_TRACE(fresh ? "fresh gradient buffers" : "parameter gradients");
    for (auto* p : {in.q.get(), in.k.get(), in.v.get()}) p->zero_grad();
    poison_arena();
    auto input = [&](Parameter& p) { return fresh ? scale(p.tensor(), 1.0f) : p.tensor(); };
    Tensor y = attention(input(*in.q), input(*in.k), input(*in.v), s.hq, s.hkv, o);
    ASSERT_EQ(y.shape(), in.q->shape());
    float* gy = g.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) gy[i] = in.dout->data()[i];
    g.run_tape();
    expect_close(y.data(), r.out, 2e-5, "out");
    expect_close(in.q->grad(), r.dq, 1e-4, "dq");
    expect_close(in.k->grad(), r.dk, 1e-4, "dk");
    expect_close(in.v->grad(), r.dv, 1e-4, "dv");
  }
  // The no-grad path gives the same output.
  poison_arena();
  NoGradGuard ng;
  Tensor y2 = attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), s.hq, s.hkv, o);
  expect_close(y2.data(), r.out, 2e-5, "out (no grad)");
  g.clear();
}

AttentionOptions opts(bool causal, float scale = 0.35f) {
  AttentionOptions o;
  o.causal = causal;
  o.scale = scale;
  return o;
}

// T = 70 spans five 16-row query blocks, so block ranges are exercised.
constexpr Dims kGqa{2, 70, 70, 4, 2, 8};

TEST(Attention, CausalGqaMatchesNaive) {
  check_against_ref(kGqa, opts(true));
}
TEST(Attention, MhaMatchesNaive) {
  check_against_ref({2, 40, 40, 3, 3, 5}, opts(true));
}
TEST(Attention, MqaMatchesNaive) {
  check_against_ref({2, 70, 70, 4, 1, 8}, opts(true));
}
TEST(Attention, NonCausalMatchesNaive) {
  check_against_ref(kGqa, opts(false));
}

TEST(Attention, VectorWidthHeadDims) {
  // head_dim 32, 48 (32 + 16) and 24 (16 + 8 tail) take the kernel's vector paths.
  check_against_ref({2, 70, 70, 4, 2, 32}, opts(true, 0.18f));
  check_against_ref({3, 37, 37, 2, 2, 16}, opts(true, 0.25f));
  check_against_ref({1, 45, 45, 2, 1, 48}, opts(false, 0.15f));
  check_against_ref({1, 50, 50, 2, 2, 24}, opts(true, 0.2f));
  AttentionOptions o = opts(true, 0.18f);
  o.q_offset = 81;  // decoding step: one query over 82 cached keys
  check_against_ref({3, 1, 82, 4, 2, 32}, o);
}

TEST(Attention, SlidingWindowMatchesNaive) {
  AttentionOptions o = opts(true);
  o.window = 9;
  check_against_ref(kGqa, o);
  o.causal = false;  // window alone: only the q_pos - k_pos < window bound
  check_against_ref(kGqa, o);
}

TEST(Attention, ChunkedMatchesNaive) {
  AttentionOptions o = opts(true);
  o.chunk = 20;
  check_against_ref(kGqa, o);
  o.causal = false;
  check_against_ref(kGqa, o);
}

TEST(Attention, AlibiMatchesNaive) {
  const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  AttentionOptions o = opts(true);
  o.alibi_slopes = slopes;
  check_against_ref(kGqa, o);
  o.causal = false;
  check_against_ref(kGqa, o);
  o.causal = true;
  o.window = 17;
  check_against_ref(kGqa, o);
}

TEST(Attention, QueriesShorterThanKeysWithOffsets) {
  // A cache holding keys 0..69, a chunk of 37 new queries at positions 33..69.
  AttentionOptions o = opts(true);
  o.q_offset = 33;
  check_against_ref({2, 37, 70, 4, 2, 8}, o);
  // The cache dropped its first 10 keys (k_offset), with a window.
  o.k_offset = 10;
  o.q_offset = 43;
  o.window = 25;
  check_against_ref({2, 37, 60, 4, 2, 8}, o);
}

TEST(Attention, FullyMaskedRowsGiveZeros) {
  // Keys start at position 5: causal query rows 0..4 see no key at all.
  AttentionOptions o = opts(true);
  o.k_offset = 5;
  const Dims s{1, 40, 40, 2, 1, 4};
  check_against_ref(s, o);
  Inputs in = make_inputs(s, 3);
  in.q->zero_grad();
  Graph& g = current_graph();
  g.clear();
  Tensor y = attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), 2, 1, o);
  float* gy = g.grad(y);
  for (int64_t i = 0; i < y.numel(); ++i) gy[i] = 1.0f;
  g.run_tape();
  for (int64_t i = 0; i < 5 * 8; ++i) {
    EXPECT_EQ(y.data()[i], 0.0f);
    EXPECT_EQ(in.q->grad()[i], 0.0f);
  }
  g.clear();
}

TEST(Attention, WholeQueryBlocksWithoutKeys) {
  // Keys start at position 20: the first 16-row query block sees no key, so
  // its rows of dQ are zeros the op must write itself.
  AttentionOptions o = opts(true);
  o.k_offset = 20;
  check_against_ref(Dims{1, 40, 40, 2, 1, 4}, o);
}

// attention(x, x, x): one gradient buffer receives dQ + dK + dV.
TEST(Attention, SharedInputSumsItsGradients) {
  const Dims s{2, 40, 40, 2, 2, 4};
  const AttentionOptions o = opts(true);
  Inputs in = make_inputs(s, 5);
  AttnRef r = ref_attention(in.q->data(), in.q->data(), in.q->data(), s, o, in.dout->data());
  for (bool fresh : {false, true}) {
    in.q->zero_grad();
    poison_arena();
    Graph& g = current_graph();
    Tensor x = fresh ? scale(in.q->tensor(), 1.0f) : in.q->tensor();
    Tensor y = attention(x, x, x, s.hq, s.hkv, o);
    float* gy = g.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) gy[i] = in.dout->data()[i];
    g.run_tape();
    std::vector<double> want(r.dq.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = r.dq[i] + r.dk[i] + r.dv[i];
    expect_close(in.q->grad(), want, 1e-4, fresh ? "dx (fresh)" : "dx");
    g.clear();
  }
}

TEST(Attention, DecodeStepEqualsLastRowOfFullSequence) {
  const Dims s{2, 45, 45, 4, 2, 8};
  Inputs in = make_inputs(s, 4);
  const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  for (int mode = 0; mode < 4; ++mode) {
    AttentionOptions o = opts(true);
    if (mode == 1) o.window = 12;
    if (mode == 2) o.chunk = 16;
    if (mode == 3) o.alibi_slopes = slopes;
    NoGradGuard ng;
    Graph& g = current_graph();
    Tensor full = attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), 4, 2, o);
    // The last query row alone, as a decoding step over the same keys.
    const int64_t c = s.hq * s.d;
    Tensor q1 = g.empty(Shape{s.batch, 1, c});
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t j = 0; j < c; ++j)
        q1.data()[b * c + j] = in.q->data()[(b * s.tq + s.tq - 1) * c + j];
    o.q_offset = s.tq - 1;
    Tensor step = attention(q1, in.k->tensor(), in.v->tensor(), 4, 2, o);
    ASSERT_EQ(step.shape(), (Shape{s.batch, 1, c}));
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t j = 0; j < c; ++j)
        EXPECT_NEAR(step.data()[b * c + j], full.data()[(b * s.tq + s.tq - 1) * c + j], 1e-5)
            << "mode " << mode;
    g.clear();
  }
}

TEST(Attention, TasksOfSomeOrAllKvHeads) {
  // A task takes all kv heads of a batch element when that keeps both
  // threads busy and fits L2, else fewer: B = 1 with 4 kv heads splits into
  // tasks of 2 kv heads at 2 threads (all 4 at 1 thread); head_dim 64 at
  // T = 300 fits one kv head per task only.
  const int saved = num_threads();
  for (int nt = 1; nt <= 2; ++nt) {
    set_num_threads(nt);
    check_against_ref({1, 70, 70, 8, 4, 8}, opts(true));
    check_against_ref({2, 300, 300, 4, 2, 64}, opts(true, 0.125f));
  }
  set_num_threads(saved);
}

TEST(Attention, SameResultWithOneOrTwoThreads) {
  const Dims s{2, 70, 70, 4, 2, 8};
  Inputs in = make_inputs(s, 5);
  Graph& g = current_graph();
  std::vector<float> out[2], dq[2], dk[2];
  const int saved = num_threads();
  for (int nt = 1; nt <= 2; ++nt) {
    set_num_threads(nt);
    in.q->zero_grad();
    in.k->zero_grad();
    in.v->zero_grad();
    g.clear();
    Tensor y = attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), 4, 2, opts(true));
    float* gy = g.grad(y);
    for (int64_t i = 0; i < y.numel(); ++i) gy[i] = in.dout->data()[i];
    g.run_tape();
    out[nt - 1].assign(y.data(), y.data() + y.numel());
    dq[nt - 1].assign(in.q->grad(), in.q->grad() + in.q->numel());
    dk[nt - 1].assign(in.k->grad(), in.k->grad() + in.k->numel());
  }
  set_num_threads(saved);
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dq[0], dq[1]);
  EXPECT_EQ(dk[0], dk[1]);
  g.clear();
}

// Finite-difference checks of q, k and v gradients in every mode.
void grad_check_mode(const Dims& s, const AttentionOptions& o, uint64_t seed = 7) {
  Inputs in = make_inputs(s, seed);
  EXPECT_TRUE(test::grad_check(
      [&] { return attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), s.hq, s.hkv, o); },
      {in.q.get(), in.k.get(), in.v.get()}));
}

constexpr Dims kSmall{2, 6, 6, 4, 2, 3};

TEST(AttentionGradient, Causal) {
  grad_check_mode(kSmall, opts(true, 0.6f));
}
TEST(AttentionGradient, NonCausal) {
  grad_check_mode(kSmall, opts(false, 0.6f));
}
// Probabilities kept from the forward (P no larger than q, k and v: head_dim
// 8 at T = 6) instead of recomputed from the logsumexps (kSmall, head_dim 3).
// Also at a head dim of 16 (the kernels' full-vector path) with a partial
// block (T = 21) and 2 query heads per kv head.
TEST(AttentionGradient, KeptProbabilities) {
  grad_check_mode({2, 6, 6, 2, 2, 8}, opts(true, 0.4f));
  grad_check_mode({1, 20, 20, 2, 1, 24}, opts(false, 0.3f));
  grad_check_mode({2, 21, 21, 4, 2, 16}, opts(true, 0.4f));
}

TEST(AttentionGradient, Mqa) {
  grad_check_mode({2, 6, 6, 4, 1, 3}, opts(true, 0.6f));
}

TEST(AttentionGradient, Window) {
  AttentionOptions o = opts(true, 0.6f);
  o.window = 3;
  grad_check_mode(kSmall, o);
}

TEST(AttentionGradient, Chunk) {
  AttentionOptions o = opts(true, 0.6f);
  o.chunk = 4;
  grad_check_mode(kSmall, o);
  o.causal = false;
  grad_check_mode(kSmall, o);
}

TEST(AttentionGradient, Alibi) {
  const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  AttentionOptions o = opts(true, 0.6f);
  o.alibi_slopes = slopes;
  grad_check_mode(kSmall, o);
}

TEST(AttentionGradient, OffsetsAndShortQueries) {
  AttentionOptions o = opts(true, 0.6f);
  o.q_offset = 5;
  o.k_offset = 1;
  grad_check_mode({2, 3, 7, 4, 2, 3}, o);
}

TEST(AttentionGradient, ManyBlocks) {
  // Three query blocks; a random subset of 64 elements per input is checked.
  grad_check_mode({1, 70, 70, 2, 1, 4}, opts(true, 0.5f));
}

TEST(AttentionGradient, FrozenKeysAndValues) {
  const Dims s = kSmall;
  Inputs in = make_inputs(s, 9);
  in.k->set_trainable(false);
  in.v->set_trainable(false);
  EXPECT_TRUE(test::grad_check(
      [&] { return attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), 4, 2, opts(true)); },
      {in.q.get()}));
}

TEST(Attention, BadShapesNameTheOp) {
  Inputs in = make_inputs({1, 4, 4, 4, 2, 3}, 10);
  try {
    attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), 4, 3, opts(true));
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[attention]"), std::string::npos);
  }
  // k has 2 heads of 3, but n_kv_heads = 4 claims 4 heads.
  EXPECT_THROW(attention(in.q->tensor(), in.k->tensor(), in.v->tensor(), 4, 4, opts(true)),
               std::invalid_argument);
  EXPECT_THROW(attention(in.q->tensor(), in.k->tensor(), in.q->tensor(), 4, 2, opts(true)),
               std::invalid_argument);
  current_graph().clear();
}

}  // namespace
}  // namespace bl
