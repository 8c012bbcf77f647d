// exp(x) for the softmax's x <= 0 in a form the compiler can vectorize:
// chapter 12's tiled attention (docs/12-scaling-attention.md, "Making the
// exponentials cheap") computes one exp per score, and std::exp is a library
// call that the compiler cannot turn into 8 or 16 at once. log_softmax's
// rows (row_kernels.hpp) use it too, on the CPU and in CUDA kernels.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>  // memcpy (device code)

#include "attend/host_device.hpp"

namespace attend::kernels {

// The same bits seen as another type of the same size (a float's bits as
// a uint32_t, and back): std::bit_cast, which CUDA device code cannot call;
// there a memcpy of 4 bytes, which nvcc turns into a register move.
template <class To, class From>
ATTEND_HOST_DEVICE inline To same_bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From));
#if defined(__CUDA_ARCH__)
  To y;
  memcpy(&y, &x, sizeof y);
  return y;
#else
  return std::bit_cast<To>(x);
#endif
}

// exp(x) for x <= 0 (the softmax's s - max; it is right up to x = 88), within
// 2 units in the last place of std::exp; exactly 0 for x = -inf (a hidden
// key) and for x < -87 (where exp(x) is near the smallest normal float);
// NaN stays NaN.
//   exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
// exp(r) is its Taylor polynomial to r^7 (the next term is below 2^-30 for
// |r| <= 0.35), and 2^n is written straight into a float's exponent bits.
// Written without a branch, a call or a float-to-int conversion (undefined
// for -inf), so that a loop of it compiles to vector instructions: the
// compiler turns an `a ? b : c` on floats here into jumps, hence the bit masks.
ATTEND_HOST_DEVICE inline float softmax_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;       // ln 2 in few bits: n * kLn2High is exact
  constexpr float kLn2Low = 1.428606765330187045e-06f;  // the rest of ln 2
  constexpr float kRound = 12582912.0f;                 // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * kLog2e + kRound;  // n = round(x / ln 2) sits in its low mantissa bits
  const float n = shifted - kRound;
  const float r = (x - n * kLn2High) - n * kLn2Low;
  float p = 1.0f / 5040.0f;  // Horner: 1 + r + r^2/2 + ... + r^7/7!
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n: the biased exponent n + 127 in bits 23..30 (unsigned, so that any
  // input, -inf included, wraps instead of overflowing).
  const uint32_t two_to_n = (same_bits_as<uint32_t>(shifted) - same_bits_as<uint32_t>(kRound) + 127u) << 23;
  const float result = p * same_bits_as<float>(two_to_n);
  const uint32_t keep = x < -87.0f ? 0u : 0xFFFFFFFFu;  // below -87 (and -inf): 0
  return same_bits_as<float>(same_bits_as<uint32_t>(result) & keep);
}

// out[i] = softmax_exp(in[i] - shift) for i in [0, n): a row of
// log_softmax's exponentials (row_kernels.hpp, the CPU's unit-stride rows),
// compiled for the baseline and for AVX-512 (16 at once) and chosen at run
// time as dropout's loop is (src/kernels/softmax_exp.cpp, chapter 10).
void softmax_exp_row(const float* in, float shift, float* out, int64_t n);
void softmax_exp_row_portable(const float* in, float shift, float* out, int64_t n);
void softmax_exp_row_avx512(const float* in, float shift, float* out, int64_t n);

}  // namespace attend::kernels
