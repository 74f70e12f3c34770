#include "tensor/arena.h"

#include <cstdlib>
#include <new>

namespace bl {

namespace {
constexpr size_t kMinBlock = size_t(1) << 22;  // 4 MiB
}

Arena::~Arena() {
  for (auto& b : blocks_) std::free(b.ptr);
}

void Arena::add_block(size_t min_size) {
  size_t size = min_size < kMinBlock ? kMinBlock : min_size;
  size = (size + 63) & ~size_t(63);
  void* p = std::aligned_alloc(64, size);
  if (!p) throw std::bad_alloc();
  blocks_.push_back({static_cast<char*>(p), size});
}

void* Arena::alloc_bytes(size_t n, size_t align) {
  if (n == 0) n = 1;
  for (;;) {
    if (cur_ < blocks_.size()) {
      size_t start = (offset_ + align - 1) & ~(align - 1);
      if (start + n <= blocks_[cur_].size) {
        offset_ = start + n;
        used_total_ += n;
        return blocks_[cur_].ptr + start;
      }
      if (cur_ + 1 < blocks_.size()) {
        ++cur_;
        offset_ = 0;
        continue;
      }
    }
    add_block(n + align);
    cur_ = blocks_.size() - 1;
    offset_ = 0;
  }
}

void Arena::reset() {
  if (blocks_.size() > 1) {
    size_t total = capacity();
    for (auto& b : blocks_) std::free(b.ptr);
    blocks_.clear();
    add_block(total);
  }
  cur_ = 0;
  offset_ = 0;
  used_total_ = 0;
}

size_t Arena::capacity() const {
  size_t c = 0;
  for (auto& b : blocks_) c += b.size;
  return c;
}

}  // namespace bl
