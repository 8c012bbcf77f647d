// A small seeded random generator, so that the same seed gives the same
// numbers on every compiler and platform. Chapter 1 (docs/01-tensors.md).
// (std::normal_distribution is not specified exactly by the standard, so the
// library turns uniform bits into floats and normals itself.)
#pragma once

#include <cstdint>

namespace attend {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_(seed) {}

  // 64 random bits (the SplitMix64 recipe: add a constant, then scramble).
  uint64_t next_u64();
  // Uniform in [0, 1) with 24 random bits, the precision of a float.
  float uniform();
  // Standard normal N(0, 1) by the Box-Muller transform.
  float normal();
  // Uniform integer in [0, n).
  int64_t randint(int64_t n);

  // The whole state is one number, so it is easy to save in a checkpoint.
  uint64_t state() const { return state_; }
  void set_state(uint64_t state) { state_ = state; }

 private:
  uint64_t state_;
};

}  // namespace attend
