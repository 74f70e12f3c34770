// The safetensors file format (https://github.com/huggingface/safetensors):
//   [8 bytes: N, little-endian u64][N bytes: JSON header][raw little-endian data]
// header = {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//           "__metadata__": {"<key>": "<string>", ...}}
// Offsets are relative to the start of the data section. The writer pads the
// header with spaces so the data starts 8-byte aligned and lays tensors out
// back to back in the given order.
//
// The reader treats every file as untrusted: it validates the header before
// allocating anything, so a corrupt or hostile file yields FormatError (naming
// the file and the problem), never a crash or a huge allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace bl {

/// A safetensors file is malformed or unsupported. what() = "<file>: <problem>".
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One tensor to write: float32 data, contiguous row-major, numel(shape) values,
/// stored as `dtype`: "F32" (exact), "BF16" or "F16" (rounded to nearest even);
/// or, with `u8` set instead of `data`, raw bytes written as dtype U8 (quantized codes).
struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  std::string dtype = "F32";
  const uint8_t* u8 = nullptr;
};

/// One tensor read back, converted to float32.
struct LoadedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  std::string dtype;  // dtype on disk: "F32", "F16", "BF16", "F64" (or "U8" when allowed)
};

struct SafetensorsFile {
  std::map<std::string, LoadedTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

/// Largest JSON header the reader accepts (100 MB), as in the reference implementation.
constexpr uint64_t kMaxSafetensorsHeader = 100u << 20;

/// Writes `tensors` (each in its dtype) atomically: a temporary file in the same directory
/// is written, fsync'ed and renamed over `path`, so readers see the old file or
/// the complete new one. Throws std::invalid_argument for bad tensors (duplicate
/// or empty names, negative dims, null data, a dtype other than F32/BF16/F16)
/// and std::runtime_error for I/O errors.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Reads and validates a whole file. Supports F32, F16, BF16 and F64 (all
/// returned as float32). Throws FormatError on any malformation and
/// std::runtime_error if the file cannot be read.
/// allow_u8: also accept U8 tensors (each byte as a float 0..255, exact); off,
/// U8 is an unsupported dtype like any other.
SafetensorsFile read_safetensors(const std::string& path, bool allow_u8 = false);

/// Throws FormatError naming the first tensor of `file` (read from `path`)
/// that holds a NaN or an infinity, and where: weights and optimizer state
/// are never legitimately non-finite, and one NaN weight makes a model emit
/// garbage without any error.
void require_finite(const SafetensorsFile& file, const std::string& path);

/// Same as read_safetensors, from bytes in memory; `name` is used in errors.
SafetensorsFile parse_safetensors(const void* bytes, size_t size, const std::string& name);

}  // namespace bl
