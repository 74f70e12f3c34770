// Column sums of a row-major block (bias gradients), per vector ISA.
#pragma once

#include <cstdint>

namespace bl {

/// Columns one call sums: their partial sums stay in vector registers while
/// the rows stream by, where summing straight into db would load and store it
/// once per row.
constexpr int64_t kColumnSumWidth = 64;

/// db[j] += sum over rows r of dy[r * ld + j], j < w <= kColumnSumWidth, rows
/// in order (so the result is the same on every ISA and thread count).
void add_column_sums(const float* dy, int64_t ld, int64_t rows, int64_t w, float* db);

}  // namespace bl
