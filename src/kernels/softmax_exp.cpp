// A row of the softmax's exponentials on the CPU, softmax_exp(in[i] - shift),
// compiled twice (for the baseline and for AVX-512) and chosen at run time,
// as dropout's loop is. log_softmax (row_kernels.hpp) calls it for its
// rows: chapter 10 (docs/10-speed.md); softmax_exp itself is chapter 12's.
#include "attend/softmax_exp.hpp"
#include "instruction_sets.hpp"

namespace attend::kernels {

namespace {

// Each element is independent and softmax_exp has no branch or call, so
// `simd` computes 4 (SSE) or 16 (AVX-512) at once. The AVX-512 build may
// fuse a multiply and an add into one FMA (one rounding fewer), so its
// results can differ from the portable build's in the last bit.
ATTEND_INLINE void softmax_exp_loop(const float* in, float shift, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = softmax_exp(in[i] - shift);
}

}  // namespace

void softmax_exp_row_portable(const float* in, float shift, float* out, int64_t n) {
  softmax_exp_loop(in, shift, out, n);
}

#ifdef ATTEND_HAVE_AVX2_KERNEL
__attribute__((target("avx512f,avx512dq,avx512vl,prefer-vector-width=512"))) void softmax_exp_row_avx512(
    const float* in, float shift, float* out, int64_t n) {
  softmax_exp_loop(in, shift, out, n);
}
#else
void softmax_exp_row_avx512(const float* in, float shift, float* out, int64_t n) {
  softmax_exp_loop(in, shift, out, n);
}
#endif

void softmax_exp_row(const float* in, float shift, float* out, int64_t n) {
  if (detail::use_avx512_loops()) {  // (instruction_sets.hpp)
    softmax_exp_row_avx512(in, shift, out, n);
  } else {
    softmax_exp_row_portable(in, shift, out, n);
  }
}

}  // namespace attend::kernels
