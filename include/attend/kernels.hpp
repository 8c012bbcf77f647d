// Kernels: raw loops over contiguous float buffers. They know nothing of
// tensors or graphs (pointers and sizes only), so each can be read, tested
// and timed alone. Chapter 3 introduces matmul; chapter 10 makes it fast.
#pragma once

#include <cstdint>

namespace attend::kernels {

// c (M, N) = a (M, K) @ b (K, N), row-major. The textbook triple loop: the
// reference every faster version is tested against.
void matmul_reference(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N);

// A batch of products c[i] = a[i] @ b[i]: matrix i of a starts at
// a + a_offsets[i], of b at b + b_offsets[i] (a broadcast batch dim repeats an
// offset); c is contiguous (batch, M, N). Cache-blocked and parallel (OpenMP).
void matmul_batched(const float* a, const int64_t* a_offsets, const float* b,
                    const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                    int64_t N);

}  // namespace attend::kernels
