// Hostile files and values never crash or hang the readers (issue 18 C): JSON
// nested deeply enough to overflow the stack in nlohmann's recursive dump and
// destructors is refused before parsing, with the file named; number
// overflow names the file; FIFOs, devices and directories are refused instead
// of blocking or reading forever.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <limits>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/text_dataset.h"
#include "expect_error.h"
#include "io/bounded_read.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "lora/adapter_io.h"
#include "lora/lora.h"
#include "temp_files.h"
#include "train/checkpoint.h"

using namespace bl;
using bl::test::contains;
using bl::test::error_of;
using bl::test::TempDir;
using bl::test::write_bytes;

namespace {

// 200,000 levels: far past any stack nlohmann's recursion could survive.
std::string deep_json(int depth = 200000) {
  return std::string(size_t(depth), '[') + std::string(size_t(depth), ']');
}

}  // namespace

TEST(HostileInput, NestingDepthIgnoresBracketsInStrings) {
  EXPECT_EQ(json_nesting_depth(R"({"a": [1, {"b": "[[[[{{"}]})", 100), 3);
  EXPECT_EQ(json_nesting_depth(R"(["\"[[[", "\\", [[]]])", 100), 3);
  EXPECT_EQ(json_nesting_depth(deep_json(), 64), 65);  // stops counting past the limit
  EXPECT_NO_THROW(check_json_depth(deep_json(kMaxJsonDepth), "x"));
  EXPECT_TRUE(contains(error_of([] { check_json_depth(deep_json(kMaxJsonDepth + 1), "f.json"); }),
                       "f.json: JSON nested deeper than 64 levels"));
}

TEST(HostileInput, DeepConfigIsRefusedNamingTheFile) {
  TempDir dir;
  write_bytes(dir / "deep.json", deep_json());
  const std::string e = error_of<ConfigError>([&] { read_json_file(dir / "deep.json"); });
  EXPECT_TRUE(contains(e, dir / "deep.json")) << e;
  EXPECT_TRUE(contains(e, "nested deeper than 64")) << e;
}

TEST(HostileInput, NumberOverflowInAConfigNamesTheFile) {
  TempDir dir;
  write_bytes(dir / "big.json", R"({"train": {"lr": 1e400}})");
  const std::string e = error_of<ConfigError>([&] { read_json_file(dir / "big.json"); });
  EXPECT_TRUE(contains(e, dir / "big.json")) << e;
  EXPECT_TRUE(contains(e, "number overflow")) << e;
  EXPECT_FALSE(contains(e, "[json.exception")) << e;
}

TEST(HostileInput, ConfigThatIsADirectoryOrFifoIsRefused) {
  TempDir dir;
  std::filesystem::create_directory(dir / "d.json");
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { read_json_file(dir / "d.json"); }),
                       "not a regular file (a directory)"));
  ASSERT_EQ(mkfifo((dir / "f.json").c_str(), 0600), 0);
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { read_json_file(dir / "f.json"); }),
                       "not a regular file (a FIFO)"));
}

TEST(HostileInput, CheckpointMetadataDeepOrADirectoryIsRefused) {
  TempDir dir;
  std::filesystem::create_directory(dir / "ck");
  write_bytes(dir / "ck/checkpoint.json", deep_json());
  std::string e = error_of<CheckpointError>([&] { read_checkpoint_info(dir / "ck"); });
  EXPECT_TRUE(contains(e, "checkpoint.json: JSON nested deeper than 64")) << e;
  std::filesystem::remove(dir / "ck/checkpoint.json");
  std::filesystem::create_directory(dir / "ck/checkpoint.json");
  e = error_of<CheckpointError>([&] { read_checkpoint_info(dir / "ck"); });
  EXPECT_TRUE(contains(e, "checkpoint.json: not a regular file (a directory)")) << e;
}

TEST(HostileInput, AdapterConfigDeepIsRefused) {
  TempDir dir;
  std::filesystem::create_directory(dir / "ad");
  write_bytes(dir / "ad/adapter_config.json", deep_json());
  const std::string e = error_of<AdapterError>([&] { read_peft_adapter(dir / "ad"); });
  EXPECT_TRUE(contains(e, "adapter_config.json: JSON nested deeper than 64")) << e;
}

TEST(HostileInput, SafetensorsHeaderDeepIsRefused) {
  const std::string header =
      R"({"t": {"dtype": "F32", "shape": )" + deep_json() + R"(, "data_offsets": [0, 4]}})";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  bytes += header + std::string(4, '\0');
  const std::string e = error_of<FormatError>(
      [&] { parse_safetensors(bytes.data(), bytes.size(), "hostile.safetensors"); });
  EXPECT_TRUE(contains(e, "hostile.safetensors")) << e;
  EXPECT_TRUE(contains(e, "deeper than 64")) << e;
}

TEST(HostileInput, CorpusThatIsAFifoOrDeviceIsRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(mkfifo((dir / "corpus").c_str(), 0600), 0);  // reading it would block forever
  EXPECT_TRUE(contains(error_of([&] { read_text_file(dir / "corpus"); }), "not a regular file"));
  EXPECT_TRUE(contains(error_of([&] { read_text_file("/dev/zero"); }), "not a regular file"));
}

TEST(HostileInput, NonFiniteWeightsAreRefusedNamingTheTensor) {
  TempDir dir;
  std::vector<float> ok(6, 0.5f), bad(6, 0.5f);
  bad[4] = std::numeric_limits<float>::quiet_NaN();
  write_safetensors(dir / "w.safetensors",
                    {{"a.weight", {2, 3}, ok.data()}, {"b.weight", {2, 3}, bad.data()}});
  const SafetensorsFile f = read_safetensors(dir / "w.safetensors");
  const std::string e = error_of<FormatError>([&] { require_finite(f, dir / "w.safetensors"); });
  EXPECT_TRUE(contains(e, "tensor 'b.weight' holds a non-finite value")) << e;
  EXPECT_TRUE(contains(e, "at element 4")) << e;
  bad[4] = std::numeric_limits<float>::infinity();
  write_safetensors(dir / "i.safetensors", {{"b.weight", {2, 3}, bad.data()}});
  EXPECT_THROW(require_finite(read_safetensors(dir / "i.safetensors"), "i"), FormatError);
  std::vector<float> fine(6, 0.5f);
  write_safetensors(dir / "f.safetensors", {{"a.weight", {2, 3}, fine.data()}});
  EXPECT_NO_THROW(require_finite(read_safetensors(dir / "f.safetensors"), "f"));
}

TEST(HostileInput, LoraAlphaMustBeFiniteAndPositive) {
  for (float a : {std::numeric_limits<float>::quiet_NaN(), 0.0f, -1.0f, 1e38f,
                  std::numeric_limits<float>::infinity()})
    EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { check_lora_alpha(a, "alpha"); }),
                         "alpha must be a finite number in (0, 65536]"))
        << a;
  EXPECT_NO_THROW(check_lora_alpha(16.0f, "alpha"));
  EXPECT_NO_THROW(check_lora_alpha(kMaxLoraAlpha, "alpha"));
}

TEST(HostileInput, HashingALinkToADeviceIsRefusedNotEndless) {
  TempDir dir;
  std::filesystem::create_symlink("/dev/zero", dir / "model.safetensors");
  EXPECT_TRUE(
      contains(error_of([&] { sha256_file(dir / "model.safetensors"); }), "not a regular file"));
  write_bytes(dir / "ok", "abc");
  EXPECT_EQ(sha256_file(dir / "ok"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
