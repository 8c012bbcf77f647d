// What the kernels share to be compiled twice, for the build's baseline
// instruction set and for AVX2 + FMA, with the CPU asked at run time which to
// run (not a public header: src/kernels only). Chapter 10 (docs/10-speed.md)
// explains it with the matmul; chapter 12's attention kernels reuse it.
#pragma once

#include <cmath>

namespace attend::kernels::detail {

// Inlined into both versions of a kernel, so that each is compiled for its
// own instruction set (a call would run baseline code).
#define ATTEND_INLINE __attribute__((always_inline)) inline

// FP_FAST_FMAF is the C library's promise that fmaf is a single fast
// instruction (always on 64-bit ARM; not on baseline x86-64).
#if defined(FP_FAST_FMAF) || defined(__FP_FAST_FMAF)
constexpr bool kBaselineHasFma = true;
#else
constexpr bool kBaselineHasFma = false;
#endif

// x * y + acc. With kFma, one fused instruction (and one rounding); without
// it the separate multiply and add. std::fma is only used where the hardware
// has it: elsewhere it would be a slow library call.
template <bool kFma>
ATTEND_INLINE float multiply_add(float x, float y, float acc) {
  if constexpr (kFma) {
    return std::fma(x, y, acc);
  } else {
    return x * y + acc;
  }
}

// Function multiversioning by hand: a kernel's template compiled a second
// time with AVX2 and FMA allowed (GCC and Clang's target attribute), chosen
// at run time only if the CPU has them. The rest of the binary still runs on
// any x86-64.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ATTEND_HAVE_AVX2_KERNEL 1
#define ATTEND_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

// True when the AVX2 versions should run: they were compiled, the CPU running
// this program has AVX2 and FMA (asked once), and matmul_force_portable(true)
// has not asked for the portable ones (for measuring and testing them).
bool use_avx2_kernels();

// True when the AVX-512 builds of the small loops (dropout's forward,
// log_softmax's exponentials) should run: this CPU has AVX-512 F, DQ and VL
// and the matmul runs its AVX-512 micro-kernel (matmul_use_kernel forces
// the portable loops with the portable kernel, for tests and measurements).
bool use_avx512_loops();

}  // namespace attend::kernels::detail
