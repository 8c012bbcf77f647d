// Seeded random numbers (chapter 1, docs/01-tensors.md).
#include "attend/random.hpp"

#include <cmath>
#include <string>

#include "attend/error.hpp"
#include "attend/kernels.hpp"

namespace attend {

uint64_t Generator::next_u64() {
  // SplitMix64: step a counter by an odd constant (the golden ratio in 64-bit
  // fixed point) and mix its bits with two multiply-xorshift rounds
  // (kernels::splitmix64_mix, shared with chapter 12's attention dropout).
  state_ += kernels::kSplitMix64Step;
  return kernels::splitmix64_mix(state_);
}

float Generator::uniform() {
  // The top 24 bits, scaled by 2^-24: every value is exactly representable.
  return kernels::uniform_from_bits(next_u64());
}

float Generator::normal() {
  // Box-Muller: two uniforms u1 in (0, 1] and u2 give sqrt(-2 ln u1) cos(2 pi u2),
  // which is standard normal. (The sine twin is discarded to keep the state one number.)
  const double u1 = 1.0 - static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
  const double u2 = static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

int64_t Generator::randint(int64_t n) {
  if (n <= 0) throw Error("randint: n must be positive, got " + std::to_string(n));
  return static_cast<int64_t>(next_u64() % static_cast<uint64_t>(n));
}

}  // namespace attend
