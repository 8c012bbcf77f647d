// Matrix multiplication kernels: the reference triple loop and a cache-blocked,
// OpenMP-parallel version. Chapter 3 (docs/03-operations.md) introduces both;
// chapter 10 measures and speeds up the fast one.
#include <algorithm>

#include "attend/kernels.hpp"

namespace attend::kernels {

void matmul_reference(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N) {
  // c[i][j] = sum_k a[i][k] * b[k][j]
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += a[i * K + k] * b[k * N + j];
      c[i * N + j] = s;
    }
  }
}

namespace {
// Tile sizes: a (kRowBlock x kInnerBlock) piece of a and a (kInnerBlock x N)
// band of b are reused while they sit in cache.
constexpr int64_t kRowBlock = 16;
constexpr int64_t kInnerBlock = 128;
}  // namespace

void matmul_batched(const float* a, const int64_t* a_offsets, const float* b,
                    const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                    int64_t N) {
  // Why this is faster than the reference loop:
  //  - loop order i, k, j: the innermost loop walks a row of b and a row of c
  //    with stride 1, so it reads whole cache lines and the compiler can use
  //    SIMD; the reference loop walks a column of b (stride N) instead.
  //  - blocking over k keeps a band of b in cache while a block of rows of a
  //    is multiplied with it.
  //  - the (batch, row block) pairs are independent and shared among threads.
  //    Each element of c is summed by one thread in a fixed order, so the
  //    result does not depend on the number of threads.
  const int64_t row_blocks = (M + kRowBlock - 1) / kRowBlock;
  const int64_t work = batch * M * N * K;
#pragma omp parallel for collapse(2) schedule(static) if (work >= 32768)
  for (int64_t p = 0; p < batch; ++p) {
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const float* A = a + a_offsets[p];
      const float* B = b + b_offsets[p];
      float* C = c + p * M * N;
      const int64_t i0 = rb * kRowBlock, i1 = std::min(M, i0 + kRowBlock);
      for (int64_t i = i0; i < i1; ++i) std::fill(C + i * N, C + (i + 1) * N, 0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += kInnerBlock) {
        const int64_t k1 = std::min(K, k0 + kInnerBlock);
        for (int64_t i = i0; i < i1; ++i) {
          float* c_row = C + i * N;
          for (int64_t k = k0; k < k1; ++k) {
            const float a_ik = A[i * K + k];
            const float* b_row = B + k * N;
#pragma omp simd
            for (int64_t j = 0; j < N; ++j) c_row[j] += a_ik * b_row[j];
          }
        }
      }
    }
  }
}

}  // namespace attend::kernels
