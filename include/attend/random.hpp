// A small seeded random generator, so that the same seed gives the same
// numbers on every compiler and platform. Chapter 1 (docs/01-tensors.md).
// (std::normal_distribution is not specified exactly by the standard, so the
// library turns uniform bits into floats and normals itself.)
#pragma once

#include <cstdint>

#include "attend/kernels.hpp"  // counter_uniform

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

  // Counter-based access (chapter 10). SplitMix64's i-th number is a function
  // of the state and i alone, so the next n numbers can be computed in any
  // order, by any thread: uniform_at(i) is what the (i+1)-th call of
  // uniform() would return (i = 0 is the next one), without changing the
  // state; skip(n) then moves past n numbers. Threads that share one stream
  // (dropout's mask) draw from it this way, and get the same numbers on any
  // thread count as one thread calling uniform() n times.
  // (Inline, so that a loop over uniform_at compiles to straight-line code.)
  float uniform_at(uint64_t i) const { return kernels::counter_uniform(state_, i); }
  void skip(uint64_t n) { state_ += n * kernels::kSplitMix64Step; }

  // The whole state is one number, so it is easy to save in a checkpoint.
  uint64_t state() const { return state_; }
  void set_state(uint64_t state) { state_ = state; }

 private:
  uint64_t state_;
};

}  // namespace attend
