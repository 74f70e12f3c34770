// Bump allocator for everything a forward/backward pass creates (activations,
// gradients of intermediates, tape nodes). reset() rewinds it; after the first
// step it has grown to the step's peak and the steady state allocates nothing.
#pragma once

#include <cstddef>
#include <vector>

namespace bl {

class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();

  /// Uninitialised bytes, aligned to `align` (a power of two, at most 64).
  void* alloc_bytes(size_t n, size_t align = 64);
  /// Forget every allocation. Blocks from a step that overflowed are merged
  /// into one block of the combined size so the next step fits in one.
  void reset();
  size_t used() const { return used_total_; }
  size_t capacity() const;

 private:
  struct Block {
    char* ptr;
    size_t size;
  };
  void add_block(size_t min_size);
  std::vector<Block> blocks_;
  size_t cur_ = 0;     // index of the block being filled
  size_t offset_ = 0;  // fill level of blocks_[cur_]
  size_t used_total_ = 0;
};

}  // namespace bl
