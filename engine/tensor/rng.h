// Seedable, serialisable random generator (xoshiro256**). Same stream on every
// platform, so seeded runs are reproducible and checkpoints can store the state.
#pragma once

#include <array>
#include <cstdint>

namespace bl {

class Rng {
 public:
  explicit Rng(uint64_t seed = 42) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next_u64();
  /// Uniform in [0, 1).
  double uniform();
  /// Uniform integer in [0, n).
  uint64_t below(uint64_t n);
  /// Standard normal (Box-Muller).
  double normal();

  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_{};
};

}  // namespace bl
