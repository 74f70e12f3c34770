// The core of the engine's vectorisable exp (activations, attention):
// e^r for |r| <= ln2 / 2 after range reduction.
#pragma once

namespace bl {

/// e^r by its Taylor series to degree 7 (truncation < 6e-9 relative for
/// |r| <= ln2 / 2), Horner. F is float or a GCC/Clang vector of floats, so
/// the caller's loop or vector code stays branch-free.
template <class F>
inline F exp_taylor7(F r) {
  F p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

}  // namespace bl
