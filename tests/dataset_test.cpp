#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>

#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "expect_error.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

using test::contains;
using test::error_of;

namespace fs = std::filesystem;

const std::string kShakespeare =
    std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt";

// tokens[i] = i, so a window's start can be read off its first element.
std::vector<int32_t> iota_tokens(int n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), 0);
  return t;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("bl_dataset_test_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& bytes) const {
    const fs::path p = path / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }
};

TEST(TextDataset, TinyShakespeareSplitMatchesTorchRef) {
  const std::string text = read_text_file(kShakespeare);
  const CharTokenizer tok = CharTokenizer::from_text(text);
  const TextDataset ds = TextDataset::from_file(kShakespeare, tok);
  // torch_ref: n = int(0.9 * len(data)) = int(0.9 * 1115394) = 1003854
  EXPECT_EQ(ds.size(), 1115394);
  EXPECT_EQ(ds.train_size(), int64_t(0.9 * 1115394.0));
  EXPECT_EQ(ds.train_size(), 1003854);
  EXPECT_EQ(ds.val_size(), 1115394 - 1003854);
  EXPECT_EQ(ds.train().data(), ds.tokens().data());
  EXPECT_EQ(ds.val().data(), ds.tokens().data() + 1003854);
  EXPECT_EQ(tok.decode(std::vector<int32_t>(ds.train().begin(), ds.train().begin() + 14)),
            "First Citizen:");
}

TEST(TextDataset, SplitIsPythonInt) {
  for (int64_t n : {1, 2, 9, 10, 11, 99, 1000, 123457, 1115394, 987654321})
    EXPECT_EQ(train_split_size(n, 0.1), int64_t(0.9 * double(n))) << n;
  EXPECT_EQ(train_split_size(100, 0.25), 75);
  EXPECT_EQ(train_split_size(100, 0.0), 100);
  EXPECT_THROW(train_split_size(100, 1.0), std::invalid_argument);
  EXPECT_THROW(train_split_size(100, -0.1), std::invalid_argument);
  ByteTokenizer bt;
  TextDataset ds("0123456789", bt, 0.3);
  EXPECT_EQ(ds.train_size(), 7);
  EXPECT_EQ(ds.val()[0], int32_t('7'));
}

TEST(BatchSampler, WindowsAndShift) {
  const auto tokens = iota_tokens(500);
  const int64_t B = 8, T = 16;
  BatchSampler s(tokens, B, T, 42);
  EXPECT_EQ(s.num_starts(), 500 - T - 1);
  std::vector<int32_t> x(size_t(B * T)), y(size_t(B * T));
  for (int it = 0; it < 50; ++it) {
    s.next(x, y);
    for (int64_t b = 0; b < B; ++b) {
      const int32_t start = x[size_t(b * T)];
      EXPECT_GE(start, 0);
      EXPECT_LT(start, 500 - T - 1);  // torch.randint(len - T - 1)
      for (int64_t t = 0; t < T; ++t) {
        EXPECT_EQ(x[size_t(b * T + t)], start + t);
        EXPECT_EQ(y[size_t(b * T + t)], start + t + 1);  // y is x shifted by one
      }
    }
  }
  EXPECT_EQ(s.batches_drawn(), 50);
}

TEST(BatchSampler, StartsCoverTheWholeRange) {
  const int64_t T = 4;
  const auto tokens = iota_tokens(int(T + 2 + 3));  // 4 possible starts: 0..3
  BatchSampler s(tokens, 1, T, 3);
  std::set<int32_t> seen;
  std::vector<int32_t> x(T), y(T);
  for (int i = 0; i < 400; ++i) {
    s.next(x.data(), y.data());
    seen.insert(x[0]);
  }
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(y[T - 1], x[0] + T);  // last target index <= len - 2
}

TEST(BatchSampler, DeterministicPerSeedAndDifferentAcrossSeeds) {
  const auto tokens = iota_tokens(10000);
  const int64_t B = 4, T = 32, n = B * T;
  auto draw = [&](uint64_t seed, int k) {
    BatchSampler s(tokens, B, T, seed);
    std::vector<int32_t> x(size_t(n * k)), y(size_t(n * k));
    for (int i = 0; i < k; ++i) s.next(x.data() + i * n, y.data() + i * n);
    return x;
  };
  EXPECT_EQ(draw(1337, 5), draw(1337, 5));
  EXPECT_NE(draw(1337, 5), draw(1338, 5));
}

TEST(BatchSampler, StateRoundTrip) {
  const auto tokens = iota_tokens(5000);
  const int64_t B = 3, T = 8;
  BatchSampler s(tokens, B, T, 9);
  std::vector<int32_t> x(size_t(B * T)), y(size_t(B * T));
  for (int i = 0; i < 3; ++i) s.next(x, y);
  const BatchSampler::State st = s.state();
  EXPECT_EQ(st.batches_drawn, 3);
  std::vector<int32_t> after;
  for (int i = 0; i < 2; ++i) {
    s.next(x, y);
    after.insert(after.end(), x.begin(), x.end());
  }
  // A fresh sampler (as after loading a checkpoint) continues identically.
  BatchSampler r(tokens, B, T, 12345);
  r.set_state(st);
  EXPECT_EQ(r.batches_drawn(), 3);
  std::vector<int32_t> again;
  for (int i = 0; i < 2; ++i) {
    r.next(x, y);
    again.insert(again.end(), x.begin(), x.end());
  }
  EXPECT_EQ(after, again);
  EXPECT_EQ(r.batches_drawn(), 5);
}

TEST(BatchSampler, EvalBatchesFixedAndSeeded1337) {
  const auto tokens = iota_tokens(3000);
  const int64_t B = 2, T = 10;
  const FixedBatches a = make_eval_batches(tokens, B, T, 5);
  const FixedBatches b = make_eval_batches(tokens, B, T, 5);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.y, b.y);
  EXPECT_EQ(a.x.size(), size_t(5 * B * T));
  BatchSampler s(tokens, B, T, 1337);
  std::vector<int32_t> x(size_t(B * T)), y(size_t(B * T));
  for (int64_t i = 0; i < 5; ++i) {
    s.next(x, y);
    EXPECT_TRUE(std::equal(x.begin(), x.end(), a.x_batch(i)));
    EXPECT_TRUE(std::equal(y.begin(), y.end(), a.y_batch(i)));
  }
}

TEST(BatchSampler, ShortSplitError) {
  const auto tokens = iota_tokens(33);
  EXPECT_NO_THROW(BatchSampler(std::span<const int32_t>(tokens).first(32), 1, 30, 1));
  const std::string e = error_of([&] { BatchSampler(tokens, 4, 32, 1, "val"); });
  EXPECT_TRUE(contains(e, "val")) << e;
  EXPECT_TRUE(contains(e, "33 tokens")) << e;
  EXPECT_TRUE(contains(e, "seq_len 32")) << e;
  EXPECT_NO_THROW(BatchSampler(tokens, 4, 31, 1));  // exactly T + 2 tokens: one start
  BatchSampler s(tokens, 4, 31, 1);
  EXPECT_EQ(s.num_starts(), 1);
  std::vector<int32_t> x(10), y(124);
  EXPECT_THROW(s.next(x, y), std::invalid_argument);
  EXPECT_THROW(BatchSampler(tokens, 0, 8, 1), std::invalid_argument);
}

TEST(TextFile, ClearErrors) {
  TempDir dir;
  const std::string missing = (dir.path / "nope.txt").string();
  std::string e = error_of([&] { read_text_file(missing); });
  EXPECT_TRUE(contains(e, "not found") && contains(e, missing)) << e;
  e = error_of([&] { read_text_file(dir.path.string()); });
  EXPECT_TRUE(contains(e, "directory")) << e;
  e = error_of([&] { read_text_file(dir.write("empty.txt", "")); });
  EXPECT_TRUE(contains(e, "empty")) << e;
  e = error_of([&] { read_text_file(dir.write("bad.txt", "hello\nw\xFFrld")); });
  EXPECT_TRUE(contains(e, "UTF-8") && contains(e, "byte offset 7")) << e;
  const std::string ok = "ünïcode text\n";
  EXPECT_EQ(read_text_file(dir.write("ok.txt", ok)), ok);
  ByteTokenizer bt;
  EXPECT_THROW(TextDataset::from_file(missing, bt), std::runtime_error);
}

}  // namespace
}  // namespace bl
