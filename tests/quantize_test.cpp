// Block quantization: reconstruction error bounds per mode, packed storage size,
// the tiled quantized matmul against the dense one (values and gradients), and
// whole quantized models (logits, memory, tied embeddings, dequantize_model).
#include "quant/quantize.h"

#include <gtest/gtest.h>

#include <cmath>

#include "component_checks.h"
#include "core/linear.h"
#include "gradcheck.h"
#include "ops/matmul.h"
#include "peft_test_util.h"
#include "quant/quantized_linear.h"

namespace bl {
namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed, float std = 0.5f) {
  Rng rng(seed);
  std::vector<float> w(size_t(rows * cols));
  for (auto& v : w) v = float(rng.normal() * std);
  // A few outliers, as real weights have: they set the group range / absmax.
  for (int64_t i = 0; i < rows; ++i) w[size_t(i * cols + (i * 37) % cols)] *= 6.0f;
  return w;
}

// Affine: w' = q * scale + min with q = round((w - min) / scale), so rounding to
// the nearest level leaves |w - w'| <= scale / 2 (float rounding adds ~1 ulp).
TEST(Quantize, AffineErrorIsAtMostHalfAStep) {
  const int64_t rows = 6, cols = 256;
  const std::vector<float> w = random_matrix(rows, cols, 1);
  double prev_mean = INFINITY;
  for (int bits : {2, 4, 8}) {
    for (int64_t gs : {32, 64, 128}) {
      QuantizedMatrix q(w.data(), rows, cols, QuantSpec{QuantMode::kAffine, bits, gs});
      const std::vector<float> d = q.dequantize_all();
      double sum = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const float s = q.group_scale(r, c / gs), b = q.group_bias(r, c / gs);
          const size_t i = size_t(r * cols + c);
          const int code = q.code(r, c);
          ASSERT_GE(code, 0);
          ASSERT_LT(code, 1 << bits);
          EXPECT_FLOAT_EQ(d[i], float(code) * s + b);
          const double err = std::abs(double(w[i]) - double(d[i]));
          ASSERT_LE(err, 0.5 * s * (1 + 1e-5) + 1e-6)
              << "bits " << bits << " group " << gs << " at (" << r << ", " << c << ")";
          sum += err;
        }
      if (gs == 64) {  // more bits, smaller error
        const double mean = sum / double(rows * cols);
        EXPECT_LT(mean, prev_mean) << bits;
        prev_mean = mean;
      }
    }
  }
}

// NF4: each element takes the code nearest to w / absmax, so the error is at most
// absmax times half the widest gap between neighbouring codes.
TEST(Quantize, Nf4PicksTheNearestCodeWithinHalfTheWidestGap) {
  const int64_t rows = 5, cols = 128;
  const std::vector<float> w = random_matrix(rows, cols, 2);
  EXPECT_NEAR(nf4_max_half_gap(), 0.5 * (1.0 - 0.6961928009986877), 1e-7);  // -1 .. -0.696
  for (int64_t gs : {32, 64, 128}) {
    QuantizedMatrix q(w.data(), rows, cols, QuantSpec{QuantMode::kNF4, 4, gs});
    const std::vector<float> d = q.dequantize_all();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float amax = q.group_scale(r, c / gs);
        float ref = 0;
        for (int64_t j = c / gs * gs; j < (c / gs + 1) * gs; ++j)
          ref = std::max(ref, std::abs(w[size_t(r * cols + j)]));
        ASSERT_EQ(amax, ref);
        const size_t i = size_t(r * cols + c);
        const float x = w[i] / amax;
        const int code = q.code(r, c);
        EXPECT_EQ(d[i], kNF4Codes[size_t(code)] * amax);
        for (float other : kNF4Codes)
          ASSERT_LE(std::abs(x - kNF4Codes[size_t(code)]), std::abs(x - other) + 1e-7f);
        ASSERT_LE(std::abs(w[i] - d[i]), amax * nf4_max_half_gap() * (1 + 1e-5f));
      }
  }
}

TEST(Quantize, PackedStorageSize) {
  const int64_t rows = 10, cols = 256;
  const std::vector<float> w = random_matrix(rows, cols, 3);
  for (int bits : {2, 4, 8})
    for (int64_t gs : {32, 64, 128}) {
      QuantizedMatrix q(w.data(), rows, cols, QuantSpec{QuantMode::kAffine, bits, gs});
      // codes + a float scale and bias per group
      EXPECT_EQ(q.bytes(), rows * cols * bits / 8 + rows * (cols / gs) * 8);
    }
  QuantizedMatrix n(w.data(), rows, cols, QuantSpec{QuantMode::kNF4, 4, 64});
  EXPECT_EQ(n.bytes(), rows * cols / 2 + rows * (cols / 64) * 4);  // codes + absmax
}

TEST(Quantize, ConstantGroupAndBadShapes) {
  std::vector<float> w(64, 0.25f);
  QuantizedMatrix q(w.data(), 1, 64, QuantSpec{QuantMode::kAffine, 4, 64});
  for (float v : q.dequantize_all()) EXPECT_EQ(v, 0.25f);
  std::vector<float> z(64, 0.0f);
  QuantizedMatrix n(z.data(), 1, 64, QuantSpec{QuantMode::kNF4, 4, 64});
  for (float v : n.dequantize_all()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(QuantizedMatrix(w.data(), 2, 32, QuantSpec{QuantMode::kAffine, 4, 64}),
               std::invalid_argument);
  EXPECT_THROW(QuantizedMatrix(w.data(), 1, 64, QuantSpec{QuantMode::kAffine, 3, 64}),
               std::invalid_argument);
  EXPECT_THROW(QuantizedMatrix(w.data(), 1, 64, QuantSpec{QuantMode::kAffine, 4, 48}),
               std::invalid_argument);
}

TEST(Quantize, SpecParsing) {
  EXPECT_EQ(QuantSpec::parse("nf4").mode, QuantMode::kNF4);
  EXPECT_EQ(QuantSpec::parse("affine8").bits, 8);
  EXPECT_EQ(QuantSpec::parse("affine2@32").group_size, 32);
  EXPECT_EQ(QuantSpec::parse("affine4@128").str(), "affine4@128");
  EXPECT_THROW(QuantSpec::parse("int4"), std::invalid_argument);
  EXPECT_THROW(QuantSpec::parse("nf4@48"), std::invalid_argument);
}

// The tiled on-the-fly matmul equals a dense matmul with the dequantized weight,
// forward and backward, including an out dimension that is not a whole number of tiles
// and the few-row decoding path.
TEST(QuantizedLinear, EqualsDenseMatmulWithDequantizedWeight) {
  const int64_t in = 256, out = quantized_tile_rows(in) * 2 + 13;
  for (QuantSpec spec :
       {QuantSpec{QuantMode::kAffine, 4, 64}, QuantSpec{QuantMode::kNF4, 4, 32},
        QuantSpec{QuantMode::kAffine, 8, 128}, QuantSpec{QuantMode::kAffine, 2, 32}}) {
    const std::vector<float> w = random_matrix(out, in, 4);
    QuantizedMatrix q(w.data(), out, in, spec);
    // 15 rows take the tiled GEMM path, 1 and 3 rows (decoding) the row-dot path.
    for (Shape xs : {Shape{3, 5, in}, Shape{1, 1, in}, Shape{3, 1, in}}) {
      Rng rng(5);
      auto x = test::make_input("x", xs, rng);
      auto b = test::make_input("b", Shape{out}, rng);
      Parameter dense("w", Shape{out, in}, false);
      const std::vector<float> d = q.dequantize_all();
      std::copy(d.begin(), d.end(), dense.data());
      Graph& g = current_graph();
      g.clear();
      x->zero_grad();
      Tensor yq = quantized_linear(x->tensor(), q, b->tensor());
      std::vector<float> dy(size_t(yq.numel()));
      for (auto& v : dy) v = float(rng.normal());
      std::copy(dy.begin(), dy.end(), g.grad(yq));
      g.run_tape();
      std::vector<float> yqv(yq.data(), yq.data() + yq.numel());
      std::vector<float> dxq(x->grad(), x->grad() + x->numel());
      g.clear();
      x->zero_grad();
      Tensor yd = linear(x->tensor(), dense.tensor(), b->tensor());
      std::copy(dy.begin(), dy.end(), g.grad(yd));
      g.run_tape();
      std::vector<float> ydv(yd.data(), yd.data() + yd.numel());
      std::vector<float> dxd(x->grad(), x->grad() + x->numel());
      g.clear();
      EXPECT_LT(test::max_abs_diff(yqv, ydv), 1e-4) << spec.str();
      EXPECT_LT(test::max_abs_diff(dxq, dxd), 1e-4) << spec.str();
    }
  }
}

TEST(QuantizedLinear, GradientMatchesFiniteDifferences) {
  const int64_t in = 64, out = 24;
  const std::vector<float> w = random_matrix(out, in, 6);
  QuantizedMatrix q(w.data(), out, in, QuantSpec{QuantMode::kNF4, 4, 32});
  Rng rng(7);
  auto x = test::make_input("x", Shape{2, 3, in}, rng);
  auto b = test::make_input("b", Shape{out}, rng);
  EXPECT_TRUE(test::grad_check([&] { return quantized_linear(x->tensor(), q, b->tensor()); },
                               {x.get(), b.get()}));
}

TEST(QuantizedLinear, EmbeddingGathersDequantizedRows) {
  const int64_t V = 9, D = 64;
  const std::vector<float> w = random_matrix(V, D, 8);
  QuantizedMatrix q(w.data(), V, D, QuantSpec{QuantMode::kAffine, 4, 32});
  const std::vector<float> d = q.dequantize_all();
  std::vector<int32_t> ids{3, 0, 8, 3};
  Tensor e = quantized_embedding(q, Tokens{ids.data(), Shape{2, 2}});
  ASSERT_EQ(e.shape(), (Shape{2, 2, D}));
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < D; ++c)
      EXPECT_EQ(e.data()[int64_t(i) * D + c], d[size_t(ids[i] * D + c)]);
  std::vector<int32_t> bad{9};
  EXPECT_THROW(quantized_embedding(q, Tokens{bad.data(), Shape{1, 1}}), std::invalid_argument);
  current_graph().clear();
}

// Whole models: logits stay close to the float model's, memory shrinks by the
// expected factor, parameter counts are unchanged, and dequantize_model gives
// back float weights that reproduce the quantized model exactly.
TEST(QuantizeModel, LogitsMemoryAndRoundTrip) {
  struct Case {
    QuantSpec spec;
    double max_rel_err;  // RMS(logit error) / RMS(logits)
    double max_ratio;    // bytes_after / bytes_before
  };
  for (bool tie : {true, false}) {
    for (Case c :
         {Case{{QuantMode::kAffine, 8, 64}, 0.02, 0.30},
          Case{{QuantMode::kAffine, 4, 64}, 0.25, 0.20}, Case{{QuantMode::kNF4, 4, 64}, 0.25, 0.17},
          Case{{QuantMode::kAffine, 2, 32}, 0.8, 0.16}}) {
      LanguageModel model(test::peft_model_config(tie));
      test::init_model(model, 3);
      const std::vector<int32_t> ids = test::token_ids(2 * 12, 40);
      const std::vector<float> ref = test::logits_of(model, ids, 2, 12);
      const int64_t params = model.num_parameters();
      const int64_t linears_and_tables = 2 * 7 + (tie ? 1 : 2);
      QuantizeReport r = quantize_model(model, c.spec);
      EXPECT_EQ(r.quantized, linears_and_tables);
      EXPECT_TRUE(r.skipped.empty());
      EXPECT_EQ(model.num_parameters(), params);  // quantized weights still count
      EXPECT_EQ(r.bytes_before, params * 4);
      EXPECT_EQ(r.bytes_after, model_weight_bytes(model));
      EXPECT_LT(double(r.bytes_after) / double(r.bytes_before), c.max_ratio) << c.spec.str();
      EXPECT_EQ(model.quantized_lm_head() == nullptr, tie);  // tied: one table serves both
      // Only norm weights remain float Parameters.
      for (auto& [name, p] : model.named_parameters())
        EXPECT_NE(name.find("norm"), std::string::npos) << name;
      const std::vector<float> q = test::logits_of(model, ids, 2, 12);
      double num = 0, den = 0;
      for (size_t i = 0; i < q.size(); ++i) {
        num += (q[i] - ref[i]) * (q[i] - ref[i]);
        den += ref[i] * ref[i];
      }
      const double err = std::sqrt(num / den);
      EXPECT_LT(err, c.max_rel_err) << c.spec.str() << " tie " << tie;
      std::printf("%s tie=%d: relative logit error %.4f, weights %lld -> %lld bytes\n",
                  c.spec.str().c_str(), int(tie), err, (long long)r.bytes_before,
                  (long long)r.bytes_after);
      EXPECT_GT(err, 0.0);
      dequantize_model(model);
      EXPECT_EQ(model.num_parameters(), params);
      EXPECT_EQ(model_weight_bytes(model), params * 4);
      EXPECT_LT(test::max_abs_diff(test::logits_of(model, ids, 2, 12), q), 1e-4);
      int found = 0;
      for (auto& [name, p] : model.named_parameters()) {
        EXPECT_EQ(p->name(), name);
        found += name == "layers.1.attention.q_proj.weight" || name == "embed_tokens.weight";
      }
      EXPECT_EQ(found, 2);
    }
  }
}

TEST(QuantizeModel, LayersThatDoNotFitTheGroupSizeAreReported) {
  ModelConfig cfg = test::peft_model_config(true, 96);  // 96 % 64 != 0, d_ff 128 fits
  LanguageModel model(cfg);
  test::init_model(model);
  QuantizeReport r = quantize_model(model, 4, 64, "affine");
  // q, k, v, gate, up read d_model (skipped); o reads n_heads*head_dim = 96 (skipped); down reads
  // 128.
  EXPECT_EQ(r.quantized, 2);
  ASSERT_EQ(r.skipped.size(), 2u * 6 + 1);
  EXPECT_NE(r.skipped[0].find("layers.0.attention.q_proj: in_features 96"), std::string::npos)
      << r.skipped[0];
  EXPECT_NE(r.skipped.back().find("embed_tokens"), std::string::npos);
  EXPECT_THROW(quantize_model(model, 3, 64, "affine"), std::invalid_argument);
  EXPECT_THROW(quantize_model(model, 4, 64, "gptq"), std::invalid_argument);
  EXPECT_THROW(quantize_model(model, 8, 64, "nf4"), std::invalid_argument);
}

// Incremental decoding through quantized layers equals the full forward pass.
TEST(QuantizeModel, CachedDecodingMatchesFullForward) {
  LanguageModel model(test::peft_model_config(true));
  test::init_model(model, 4);
  quantize_model(model, 4, 32, "nf4");
  const int64_t T = 10;
  const double err = test::cached_decoding_error(model, T, test::one_at_a_time(T), T);
  EXPECT_LT(err, 1e-4);
}

}  // namespace
}  // namespace bl
