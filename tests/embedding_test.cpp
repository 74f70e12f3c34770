// Embedding gather and its scatter-add backward.
#include "ops/embedding.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gradcheck.h"

namespace bl {
namespace {

TEST(Embedding, GathersRows) {
  Rng rng(1);
  auto w = test::make_input("w", Shape{7, 5}, rng);
  const std::vector<int32_t> ids = {3, 0, 6, 3, 1, 3};
  Tensor y = embedding(w->tensor(), Tokens{ids.data(), Shape{2, 3}});
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5}));
  for (size_t t = 0; t < ids.size(); ++t)
    for (int d = 0; d < 5; ++d) ASSERT_EQ(y.data()[t * 5 + d], w->data()[ids[t] * 5 + d]);
  // A 1-D id list gives (N, D).
  Tensor y1 = embedding(w->tensor(), Tokens{ids.data(), Shape{6}});
  EXPECT_EQ(y1.shape(), (Shape{6, 5}));
  current_graph().clear();
}

TEST(Embedding, Gradient) {
  Rng rng(2);
  auto w = test::make_input("w", Shape{6, 4}, rng);
  // Repeated ids (2 appears three times) and an unused row (5).
  const std::vector<int32_t> ids = {2, 0, 2, 4, 1, 2, 3, 0};
  EXPECT_TRUE(test::grad_check(
      [&] {
        return embedding(w->tensor(), Tokens{ids.data(), Shape{2, 4}});
      },
      {w.get()}));
}

TEST(Embedding, BackwardScatterAddsRepeatedIds) {
  Graph& g = current_graph();
  g.clear();
  Parameter w("w", Shape{3, 2});
  const std::vector<int32_t> ids = {1, 1, 2, 1};
  Tensor y = embedding(w.tensor(), Tokens{ids.data(), Shape{4}});
  float* gy = g.grad(y);
  for (int i = 0; i < 8; ++i) gy[i] = float(i + 1);
  w.zero_grad();
  g.run_tape();
  const float expect[6] = {0, 0, 1 + 3 + 7, 2 + 4 + 8, 5, 6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(w.grad()[i], expect[i]) << i;
  g.clear();
}

// Enough tokens x columns for the column-band parallel backward, with heavy
// id collisions (V small), against a serial double-precision scatter.
TEST(Embedding, LargeBackwardMatchesSerialScatter) {
  Graph& g = current_graph();
  g.clear();
  Rng rng(3);
  const int64_t V = 50, D = 136, N = 4096;  // D not a multiple of the 16-float band
  auto w = test::make_input("w", Shape{V, D}, rng);
  std::vector<int32_t> ids(N);
  for (auto& id : ids) id = int32_t(rng.below(V));
  Tensor y = embedding(w->tensor(), Tokens{ids.data(), Shape{8, 512}});
  ASSERT_EQ(y.shape(), (Shape{8, 512, D}));
  float* gy = g.grad(y);
  std::vector<double> ref(size_t(V * D), 0.0);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t d = 0; d < D; ++d) {
      ASSERT_EQ(y.data()[t * D + d], w->data()[ids[size_t(t)] * D + d]);
      gy[t * D + d] = float(rng.normal());
      ref[size_t(ids[size_t(t)] * D + d)] += gy[t * D + d];
    }
  w->zero_grad();
  g.run_tape();
  for (int64_t i = 0; i < V * D; ++i) ASSERT_NEAR(w->grad()[i], ref[size_t(i)], 1e-3) << i;
  g.clear();
}

TEST(Embedding, FrozenWeightRecordsNothing) {
  Graph& g = current_graph();
  g.clear();
  Rng rng(4);
  auto w = test::make_input("w", Shape{4, 3}, rng);
  w->set_trainable(false);
  const std::vector<int32_t> ids = {0, 3};
  Tensor y = embedding(w->tensor(), Tokens{ids.data(), Shape{2}});
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(g.tape_size(), 0u);
  g.clear();
}

TEST(Embedding, OutOfRangeIdNamesTheIdAndV) {
  Rng rng(5);
  auto w = test::make_input("w", Shape{10, 3}, rng);
  for (int32_t bad : {10, -1, 12345}) {
    const std::vector<int32_t> ids = {1, 2, bad, 3};
    try {
      embedding(w->tensor(), Tokens{ids.data(), Shape{4}});
      FAIL() << "expected throw for id " << bad;
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("[embedding]"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("V = 10"), std::string::npos) << msg;
    }
  }
  current_graph().clear();
}

TEST(Embedding, BadShapesThrow) {
  Rng rng(6);
  auto w3 = test::make_input("w3", Shape{2, 3, 4}, rng);
  auto w = test::make_input("w", Shape{4, 3}, rng);
  const std::vector<int32_t> ids(16, 0);
  try {
    embedding(w3->tensor(), Tokens{ids.data(), Shape{2}});
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[embedding]"), std::string::npos) << e.what();
  }
  try {
    embedding(w->tensor(), Tokens{ids.data(), Shape{2, 2, 2, 2}});
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[embedding]"), std::string::npos) << e.what();
  }
  current_graph().clear();
}

}  // namespace
}  // namespace bl
