#include "tensor/shape.h"

#include <stdexcept>

namespace bl {

Shape::Shape(std::initializer_list<int64_t> d) {
  if (d.size() > kMaxRank) throw std::invalid_argument("[shape] rank > 4");
  for (int64_t v : d) dims[rank++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  // A shape from a hostile config or file (d_model 1e9 x n_layers 1e6, ...)
  // must not wrap around to a small or negative size that then gets allocated.
  for (int i = 0; i < rank; ++i)
    if (__builtin_mul_overflow(n, dims[i], &n))
      throw std::overflow_error("[shape] " + str() + " has more than 2^63 elements");
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + ")";
}

}  // namespace bl
