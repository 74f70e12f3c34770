// Row gathers and scatters by integer index (MoE token dispatch), with backward.
// Indices are raw int32 arrays that must outlive the backward pass (arena memory).
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace bl {

/// x viewed as (rows, cols) -> (n, cols) with y[i] = x[idx[i]].
/// Throws "[gather_rows] ..." on an index outside [0, rows).
Tensor gather_rows(const Tensor& x, const int32_t* idx, int64_t n);

/// src (n, cols) -> (n_rows, cols), zero except out[idx[i]] += w[i] * src[i]
/// (w (n) optional: undefined = 1). Rows hit several times are summed.
/// Throws "[scatter_add_rows] ..." on an index outside [0, n_rows).
Tensor scatter_add_rows(const Tensor& src, const int32_t* idx, int64_t n_rows,
                        const Tensor& w = Tensor());

/// x viewed as (rows, cols), idx (rows * k) -> (rows, k) with
/// y[r, j] = x[r, idx[r * k + j]] (numpy take_along_axis on the last dim).
/// Throws "[take_along_rows] ..." on an index outside [0, cols).
Tensor take_along_rows(const Tensor& x, const int32_t* idx, int64_t k);

}  // namespace bl
