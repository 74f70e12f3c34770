// SHA-256 (FIPS 180-4): content hashes of datasets and checkpoint files, so a
// run records exactly which bytes it trained on and a checkpoint can be
// verified before it is resumed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bl {

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256() { reset(); }
  /// Starts a new hash.
  void reset();
  /// Appends bytes.
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  /// Finishes and returns the 32-byte digest (the object must be reset() to reuse).
  std::array<uint8_t, 32> digest();
  /// Finishes and returns the digest as 64 lowercase hex characters.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_;
  size_t buf_len_ = 0;
  uint64_t total_ = 0;  // bytes hashed
};

/// Hex SHA-256 of a byte string.
std::string sha256_hex(std::string_view data);
/// Hex SHA-256 of a regular file's contents (streamed). Throws std::runtime_error
/// naming the file, also for a device, FIFO or directory (which would never end).
std::string sha256_file(const std::string& path);

}  // namespace bl
