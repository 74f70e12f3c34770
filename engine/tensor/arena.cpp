#include "tensor/arena.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace bl {

namespace {
constexpr size_t kMinBlock = size_t(1) << 22;  // 4 MiB
constexpr size_t kHugePage = size_t(1) << 21;  // 2 MiB

// Blocks are whole 2 MiB pages, mapped directly: the kernel can then back them
// with transparent huge pages (a training step streams through tens of MB of
// activations, often at strides of a few KB, and with 4 KiB pages much of
// that time went to TLB misses; Debian's default THP mode is "madvise", so
// without the advice every block gets 4 KiB pages), and a freed block goes
// straight back to the system instead of lingering in malloc's heap while its
// merged successor is faulted in.
char* map_block(size_t size) {
#if defined(__linux__)
  // Over-map by one huge page, then trim to a 2 MiB-aligned range.
  const size_t span = size + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (base + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  if (start > base) munmap(raw, start - base);
  if (base + span > start + size)
    munmap(reinterpret_cast<void*>(start + size), base + span - start - size);
  madvise(reinterpret_cast<void*>(start), size, MADV_HUGEPAGE);  // advice only
  return reinterpret_cast<char*>(start);
#else
  void* p = std::aligned_alloc(kHugePage, size);
  if (!p) throw std::bad_alloc();
  return static_cast<char*>(p);
#endif
}

void unmap_block(char* p, size_t size) {
#if defined(__linux__)
  munmap(p, size);
#else
  (void)size;
  std::free(p);
#endif
}
}  // namespace

Arena::~Arena() {
  for (auto& b : blocks_) unmap_block(b.ptr, b.size);
}

void Arena::add_block(size_t min_size) {
  size_t size = min_size < kMinBlock ? kMinBlock : min_size;
  size = (size + kHugePage - 1) & ~(kHugePage - 1);
  blocks_.push_back({map_block(size), size});
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
    // Geometric growth: a first step that overflows ends with a few blocks,
    // not dozens, each with an unused tail (resident under huge pages).
    add_block(std::max(n + align, capacity()));
    cur_ = blocks_.size() - 1;
    offset_ = 0;
  }
}

void Arena::reset() {
  if (blocks_.size() > 1) {
    size_t total = capacity();
    for (auto& b : blocks_) unmap_block(b.ptr, b.size);
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
