// Writes GGUF v3 files (the llama.cpp / ggml format): metadata key-values, then
// tensor infos, then the tensor data, each tensor at a multiple of
// general.alignment (32). Dims are given in GGML order, ne[0] innermost: a
// row-major (rows, cols) matrix has ne = {cols, rows}. Shared by the LoRA
// adapter writer and the base-model export (docs/gguf.md).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bl {

/// GGUF metadata value types (gguf.h: enum gguf_type).
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

/// GGML tensor types this project writes and reads (ggml.h: enum ggml_type).
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1 };

/// llama.cpp's general.file_type (llama.h: enum llama_ftype).
enum class LlamaFileType : uint32_t { kAllF32 = 0, kMostlyF16 = 1 };

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kGgufAlignment = 32;

class GgufWriter {
 public:
  GgufWriter();
  void add_string(const std::string& key, const std::string& v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_strings(const std::string& key, const std::vector<std::string>& v);
  void add_i32s(const std::string& key, const std::vector<int32_t>& v);
  void add_f32s(const std::string& key, const std::vector<float>& v);
  /// `data` holds the values row-major (ne[0] fastest), product(ne) of them;
  /// F16 rounds each to the nearest half. The data is copied.
  void add_tensor(const std::string& name, const std::vector<uint64_t>& ne, const float* data,
                  GgmlType type = GgmlType::kF32);
  /// Writes the file (via a temporary beside it, renamed into place).
  /// Throws std::runtime_error naming the path on failure.
  void write(const std::string& path) const;
  size_t n_kv() const { return n_kv_; }
  size_t n_tensors() const { return infos_.size(); }

 private:
  void key(const std::string& k, GgufType t);
  std::vector<uint8_t> kv_, infos_buf_, data_;
  std::vector<std::string> infos_;  // tensor names, to refuse duplicates
  std::vector<std::string> keys_;
  size_t n_kv_ = 0;
};

}  // namespace bl
