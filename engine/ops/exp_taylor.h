// The core of the engine's vectorisable exp (activations, attention; scalar
// here, Highway vectors in simd/vexp-inl.h): e^r for |r| <= ln2 / 2 after
// range reduction.
#pragma once

namespace bl {

/// e^r's Taylor coefficients to degree 7, highest first, for Horner's rule
/// (truncation < 6e-9 relative for |r| <= ln2 / 2).
inline constexpr float kExpTaylor7[] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                        1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

/// e^r by kExpTaylor7, Horner, branch-free.
inline float exp_taylor7(float r) {
  float p = kExpTaylor7[0];
  for (int i = 1; i < 8; ++i) p = p * r + kExpTaylor7[i];
  return p;
}

}  // namespace bl
