// Reads GGUF v2/v3 files defensively: the whole file is checked before any
// value is used (sizes against the file, general.alignment a power of two in
// [8, 65536], tensors tiling the data section in offset order with no overlap,
// gap or stray tail). Tensors may be F32 or F16 (returned as float). Errors
// name the file, the problem and the byte position.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/gguf_writer.h"

namespace bl {

/// A malformed GGUF file; what() = "<file>: <problem> (at byte N)".
class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One metadata value. Scalars: `type` and one of num (integers, floats and
/// bool, exact for every 32-bit value), str. Arrays: `type` = kArray,
/// `elem` the element type, and strs or nums (arrays of arrays keep only
/// their count, in n).
struct GgufValue {
  GgufType type = GgufType::kU8;
  GgufType elem = GgufType::kU8;
  double num = 0;
  int64_t i64 = 0;  // integer scalars exactly (u64 above 2^63 is refused)
  std::string str;
  std::vector<double> nums;
  std::vector<std::string> strs;
  uint64_t n = 0;  // array length
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // GGML order, ne[0] innermost
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0, bytes = 0;
  uint64_t numel() const;
};

class GgufFile {
 public:
  /// Reads and checks `path` (a regular file of at most max_bytes).
  static GgufFile read(const std::string& path, int64_t max_bytes = int64_t(4) << 30);
  uint32_t version = 0;
  std::map<std::string, GgufValue> kv;
  std::vector<GgufTensorInfo> tensors;  // file order
  const GgufValue* find(const std::string& key) const;
  /// Key `key` as a string / u32-or-i32 / f32; GgufError naming the key if absent
  /// or of another type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  float get_f32(const std::string& key) const;
  const GgufTensorInfo* tensor(const std::string& name) const;
  /// A tensor's values as float (F16 widened exactly).
  std::vector<float> tensor_data(const GgufTensorInfo& t) const;
  const std::string& path() const { return path_; }
  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::string path_;
  std::vector<uint8_t> buf_;
  uint64_t data_start_ = 0;
};

}  // namespace bl
