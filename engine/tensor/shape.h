// Shape of a dense row-major tensor (rank <= 4). Fixed-size: no heap.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace bl {

constexpr int kMaxRank = 4;

struct Shape {
  std::array<int64_t, kMaxRank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);

  /// Dimension i; negative i counts from the back (-1 = last).
  int64_t operator[](int i) const { return dims[i < 0 ? i + rank : i]; }
  int64_t& operator[](int i) { return dims[i < 0 ? i + rank : i]; }
  int64_t numel() const;
  /// Size of the last dimension (1 for a scalar).
  int64_t cols() const { return rank == 0 ? 1 : dims[rank - 1]; }
  /// Product of all but the last dimension: the row count of the 2-D view.
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(2, 3, 4)"
};

}  // namespace bl
