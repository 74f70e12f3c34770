// Hostile GGUF adapters and shapes (issue 18 C), and the crashers the fuzzers
// in fuzz/ found, kept as regression tests (README "Reliability").
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "expect_error.h"
#include "lora/adapter_io.h"
#include "store/experiment_store.h"
#include "temp_files.h"
#include "tensor/shape.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

using namespace bl;
using bl::test::contains;
using bl::test::error_of;
using bl::test::read_bytes;
using bl::test::TempDir;
using bl::test::write_bytes;

namespace {

// One layer, rank 2, 3 -> 5: weight_a holds 6 floats (24 bytes, padded to 32),
// weight_b 10 (40 bytes, padded to 64).
Adapter small_adapter() {
  Adapter ad;
  ad.rank = 2;
  ad.alpha = 4;
  AdapterLayer& x = ad.layers["layers.0.attention.q_proj"];
  x.rank = 2, x.in = 3, x.out = 5, x.alpha = 4;
  for (int i = 0; i < 6; ++i) x.a.push_back(0.25f * float(i + 1));
  for (int i = 0; i < 10; ++i) x.b.push_back(-0.5f * float(i + 1));
  return ad;
}

// Blocklab's older layout: the structural checks are the same for both layouts.
std::string gguf_bytes(const TempDir& dir, const Adapter& ad = small_adapter()) {
  write_gguf_adapter_legacy(dir / "a.gguf", ad);
  return read_bytes(dir / "a.gguf");
}

// Byte position of the value that follows a metadata key or tensor name.
size_t after(const std::string& bytes, const std::string& key) {
  const size_t p = bytes.find(key);
  EXPECT_NE(p, std::string::npos) << key;
  return p + key.size();
}

template <class T>
void poke(std::string& bytes, size_t pos, T v) {
  std::memcpy(bytes.data() + pos, &v, sizeof(T));
}

// The offset field of a tensor info: name, n_dims (u32), 2 dims (u64), type (u32).
size_t offset_pos(const std::string& bytes, const std::string& name) {
  return after(bytes, name) + 4 + 16 + 4;
}

std::string read_error(const TempDir& dir, const std::string& bytes) {
  write_bytes(dir / "h.gguf", bytes);
  return error_of<AdapterError>([&] { read_gguf_adapter(dir / "h.gguf"); });
}

}  // namespace

TEST(HostileFormats, GgufRoundTripsUnchanged) {
  TempDir dir;
  gguf_bytes(dir);
  const Adapter back = read_gguf_adapter(dir / "a.gguf");
  EXPECT_EQ(back.layers.at("layers.0.attention.q_proj").a,
            small_adapter().layers.at("layers.0.attention.q_proj").a);
  EXPECT_EQ(back.layers.at("layers.0.attention.q_proj").b,
            small_adapter().layers.at("layers.0.attention.q_proj").b);
}

TEST(HostileFormats, GgufAlignmentMustBeAPowerOfTwoInBounds) {
  TempDir dir;
  const std::string good = gguf_bytes(dir);
  const size_t at = after(good, "general.alignment") + 4;  // skip the type
  for (uint32_t a : {0u, 1u, 4u, 24u, 48u, 1u << 20, 0xFFFFFFFFu}) {
    std::string bad = good;
    poke(bad, at, a);
    const std::string e = read_error(dir, bad);
    EXPECT_TRUE(contains(e, "general.alignment")) << a << ": " << e;
  }
  std::string wrong_type = good;
  poke(wrong_type, at - 4, uint32_t(10));  // u64: would be skipped and 32 assumed
  EXPECT_TRUE(contains(read_error(dir, wrong_type), "general.alignment must be a u32"));
}

TEST(HostileFormats, GgufChangedAlignmentNeverReadsOtherBytes) {
  // A valid power of two that moves the data section must be refused; one that
  // does not move it must give back exactly the stored weights.
  TempDir dir;
  const std::string good = gguf_bytes(dir);
  const size_t at = after(good, "general.alignment") + 4;
  const Adapter want = small_adapter();
  int refused = 0;
  for (uint32_t a : {8u, 16u, 64u, 128u, 4096u}) {
    std::string changed = good;
    poke(changed, at, a);
    write_bytes(dir / "c.gguf", changed);
    try {
      const Adapter back = read_gguf_adapter(dir / "c.gguf");
      EXPECT_EQ(back.layers.at("layers.0.attention.q_proj").a,
                want.layers.at("layers.0.attention.q_proj").a)
          << a;
      EXPECT_EQ(back.layers.at("layers.0.attention.q_proj").b,
                want.layers.at("layers.0.attention.q_proj").b)
          << a;
    } catch (const AdapterError& e) {
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);  // at least 4096 moves a small file's data section
}

TEST(HostileFormats, GgufOverlappingOrOutOfBoundsTensorsAreRefused) {
  TempDir dir;
  const std::string good = gguf_bytes(dir);
  const size_t b_off = offset_pos(good, "q_proj.weight_b");
  std::string same = good;
  poke(same, b_off, uint64_t(0));  // weight_b at weight_a's offset
  std::string e = read_error(dir, same);
  EXPECT_TRUE(contains(e, "overlaps")) << e;

  std::string gap = good;
  poke(gap, b_off, uint64_t(64));  // 32 would follow weight_a
  e = read_error(dir, gap);
  EXPECT_TRUE(contains(e, "gap of")) << e;

  std::string outside = good;
  poke(outside, b_off, uint64_t(1) << 40);
  e = read_error(dir, outside);
  EXPECT_TRUE(contains(e, "weight_b")) << e;

  std::string unaligned = good;
  poke(unaligned, b_off, uint64_t(36));
  e = read_error(dir, unaligned);
  EXPECT_TRUE(contains(e, "not a multiple of general.alignment")) << e;

  e = read_error(dir, good + std::string(64, '\0'));  // trailing bytes
  EXPECT_TRUE(contains(e, "data section")) << e;
  e = read_error(dir, good.substr(0, good.size() - 30));  // weight_b cut short
  EXPECT_TRUE(contains(e, "outside the file")) << e;
}

TEST(HostileFormats, GgufDuplicateTensorIsRefused) {
  TempDir dir;
  std::string bytes = gguf_bytes(dir);
  const size_t p = bytes.find("q_proj.weight_b");
  bytes.replace(p, std::strlen("q_proj.weight_b"), "q_proj.weight_a");
  EXPECT_TRUE(contains(read_error(dir, bytes), "appears twice"));
}

TEST(HostileFormats, GgufNonFiniteWeightsAreRefusedNamingTheTensor) {
  TempDir dir;
  Adapter ad = small_adapter();
  ad.layers.begin()->second.b[7] = std::numeric_limits<float>::quiet_NaN();
  const std::string e = read_error(dir, gguf_bytes(dir, ad));
  EXPECT_TRUE(contains(e, "tensor 'lora.layers.0.attention.q_proj.weight_b' holds a non-finite"))
      << e;
  EXPECT_TRUE(contains(e, "at element 7")) << e;
  ad = small_adapter();
  ad.layers.begin()->second.a[0] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(contains(read_error(dir, gguf_bytes(dir, ad)), "weight_a' holds a non-finite"));
}

TEST(HostileFormats, GgufAlphaAndRankAreChecked) {
  TempDir dir;
  const std::string good = gguf_bytes(dir);
  for (float a : {std::numeric_limits<float>::quiet_NaN(), 0.0f, 1e38f}) {
    std::string bad = good;
    // The key "lora.alpha" (length 10), not "adapter.lora.alpha" before it.
    poke(bad, after(good, std::string("\x0a\0\0\0\0\0\0\0lora.alpha", 18)) + 4, a);
    EXPECT_TRUE(contains(read_error(dir, bad), "lora.alpha must be a finite number")) << a;
  }
  std::string zero = good;
  poke(zero, after(good, "lora.rank") + 4, uint32_t(0));
  EXPECT_TRUE(contains(read_error(dir, zero), "lora.rank 0 must be at least 1"));
}

TEST(HostileFormats, GgufFifoIsRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(mkfifo((dir / "f.gguf").c_str(), 0600), 0);
  EXPECT_TRUE(contains(error_of<AdapterError>([&] { read_gguf_adapter(dir / "f.gguf"); }),
                       "not a regular file"));
}

TEST(HostileFormats, ShapeElementCountOverflowIsAnError) {
  const Shape s{int64_t(1) << 32, int64_t(1) << 32};
  EXPECT_TRUE(contains(error_of<std::overflow_error>([&] { s.numel(); }),
                       "(4294967296, 4294967296) has more than 2^63 elements"));
  EXPECT_THROW((Shape{-(int64_t(1) << 62), 4}.numel()), std::overflow_error);
  EXPECT_EQ((Shape{int64_t(1) << 31, int64_t(1) << 31}.numel()), int64_t(1) << 62);
  EXPECT_EQ((Shape{3, 0, int64_t(1) << 62}.numel()), 0);  // 3 * 0 never overflows
}

// fuzz/store_fuzz.cpp: a database whose header holds a negative user_version
// (schema version) made the migration index its step table at -16777214,
// calling through a garbage function pointer. The crasher's bytes, as found.
TEST(HostileFormats, StoreWithNegativeSchemaVersionIsRefused) {
  TempDir dir;
  const std::string crasher = read_bytes(std::string(BLOCKLAB_SOURCE_DIR) +
                                         "/tests/data/fuzz/store-negative-user-version.sqlite");
  ASSERT_GT(crasher.size(), 100u);
  write_bytes(dir / "experiments.db", crasher);
  // The fuzzer's file is also damaged: the open-time quick_check refuses it first.
  const std::string e = error_of<StoreError>([&] { ExperimentStore s(dir / "experiments.db"); });
  EXPECT_TRUE(contains(e, dir / "experiments.db")) << e;
  EXPECT_TRUE(contains(e, "damaged") || contains(e, "schema version -16777214 is invalid")) << e;
  // An intact database with that version reaches the schema check.
  const std::string intact = dir / "intact.db";
  { ExperimentStore s(intact); }  // a real store's tables, closed again
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(intact.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = -16777214;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  const std::string e2 = error_of<StoreError>([&] { ExperimentStore s(intact); });
  EXPECT_TRUE(contains(e2, intact)) << e2;
  EXPECT_TRUE(contains(e2, "schema version -16777214 is invalid")) << e2;
}

// llama.cpp's layout goes through the same reader: bad values are named.
namespace {
std::string llama_gguf_bytes(const TempDir& dir, const Adapter& ad = small_adapter()) {
  // small_adapter's layer as v_proj (3 -> 5; v rows are not permuted), for a
  // LLaMA-style base (the writer checks the architecture, not the widths).
  Adapter v = ad;
  v.layers["layers.0.attention.v_proj"] = v.layers.at("layers.0.attention.q_proj");
  v.layers.erase("layers.0.attention.q_proj");
  ModelConfig base;
  base.n_layers = 1;
  base.block.attention = "gqa";
  base.block.ffn = "gated";
  base.block.norm = "rms_norm";
  base.block.position = "rope";
  base.block.bias = false;
  base.block.d_model = 4;
  base.block.n_heads = 2;
  write_gguf_adapter(dir / "l.gguf", v, base);
  return read_bytes(dir / "l.gguf");
}
}  // namespace

TEST(HostileFormats, LlamaCppLayoutHostileValuesAreNamed) {
  TempDir dir;
  const std::string good = llama_gguf_bytes(dir);
  write_bytes(dir / "ok.gguf", good);
  EXPECT_EQ(read_gguf_adapter(dir / "ok.gguf").layers.at("layers.0.attention.v_proj").b,
            small_adapter().layers.at("layers.0.attention.q_proj").b);
  Adapter nan = small_adapter();
  nan.layers.begin()->second.b[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(contains(read_error(dir, llama_gguf_bytes(dir, nan)),
                       "tensor 'blk.0.attn_v.weight.lora_b' holds a non-finite value"));
  // A repeated key: "adapter.type" spelled again in place of "general.type".
  std::string twice = good;
  const size_t p = twice.find("general.type");
  ASSERT_NE(p, std::string::npos);
  twice.replace(p, 12, "adapter.type");
  EXPECT_TRUE(contains(read_error(dir, twice), "metadata key 'adapter.type' appears twice"));
  // A quantized tensor type (Q8_0 = 8) is refused, not misread.
  std::string q8 = good;
  poke(q8, after(good, "attn_v.weight.lora_a") + 4 + 16, uint32_t(8));
  EXPECT_TRUE(contains(read_error(dir, q8), "has GGML type 8 (only F32 and F16 are read)"));
  // An alpha that is not finite.
  std::string alpha = good;
  poke(alpha, after(good, "adapter.lora.alpha") + 4, std::numeric_limits<float>::infinity());
  EXPECT_TRUE(contains(read_error(dir, alpha), "adapter.lora.alpha must be a finite number"));
  // Every truncation is a clean error (the last tensor's trailing padding, up
  // to 31 bytes, is not required).
  for (size_t cut = 0; cut + 32 <= good.size(); cut += 7)
    EXPECT_FALSE(read_error(dir, good.substr(0, cut)).empty()) << cut;
}
