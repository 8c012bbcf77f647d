// Dropout's forward loop on the CPU: the mask from the counter-based
// generator and the scaled output, compiled twice (for the baseline and for
// AVX-512) and chosen at run time, as the matmul's micro-kernels are.
// Chapter 10 (docs/10-speed.md); ops::dropout (chapter 3) calls it.
#include <cstdint>
#include <string_view>

#include "attend/kernels.hpp"
#include "instruction_sets.hpp"

namespace attend::kernels {

namespace {

// keep[i] = (draw i+1 of a generator at `state`) >= p; out[i] = in[i] *
// scale where kept, else 0; for i in [begin, end). Each i is independent, so
// `simd` may compute 16 at once; that needs 64-bit multiplies in vector
// registers, which x86 has only from AVX-512 (AVX2 and SSE emulate them,
// slower than the plain loop). scale * kept, not `kept ? scale : 0`, which
// may become a jump per element.
ATTEND_INLINE void dropout_loop(uint64_t state, float p, float scale, const float* in, float* out,
                                uint8_t* keep, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float u = uniform_from_bits(splitmix64_mix(state + static_cast<uint64_t>(i + 1) * kSplitMix64Step));
    const int32_t kept = u >= p;
    keep[i] = static_cast<uint8_t>(kept);
    out[i] = in[i] * (scale * static_cast<float>(kept));
  }
}

}  // namespace

void dropout_forward_portable(uint64_t state, float p, float scale, const float* in, float* out,
                              uint8_t* keep, int64_t begin, int64_t end) {
  dropout_loop(state, p, scale, in, out, keep, begin, end);
}

#ifdef ATTEND_HAVE_AVX2_KERNEL
// 173,056 elements (a batch's attention weights), one thread: 273 us for the
// portable loop, 37 us for this one (the same bytes).
__attribute__((target("avx512f,avx512dq,avx512vl,prefer-vector-width=512"))) void dropout_forward_avx512(
    uint64_t state, float p, float scale, const float* in, float* out, uint8_t* keep, int64_t begin,
    int64_t end) {
  dropout_loop(state, p, scale, in, out, keep, begin, end);
}

bool dropout_forward_avx512_runs() {
  static const bool runs = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512vl");
  return runs;
}
#else
void dropout_forward_avx512(uint64_t state, float p, float scale, const float* in, float* out,
                            uint8_t* keep, int64_t begin, int64_t end) {
  dropout_loop(state, p, scale, in, out, keep, begin, end);
}
bool dropout_forward_avx512_runs() { return false; }
#endif

bool detail::use_avx512_loops() {
  return dropout_forward_avx512_runs() && std::string_view(matmul_kernel_name()) == "avx512";
}

void dropout_forward(uint64_t state, float p, float scale, const float* in, float* out, uint8_t* keep,
                     int64_t begin, int64_t end) {
  if (detail::use_avx512_loops()) {
    dropout_forward_avx512(state, p, scale, in, out, keep, begin, end);
  } else {
    dropout_forward_portable(state, p, scale, in, out, keep, begin, end);
  }
}

}  // namespace attend::kernels
