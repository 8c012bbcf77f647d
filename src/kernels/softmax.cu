// The row softmax on a GPU, attention's other hot loop: one block per row,
// the row's maximum and sum found by a tree reduction in shared memory.
// Tested against softmax_rows_reference (softmax.cpp beside it). Chapter 11
// (docs/11-cuda.md); runs on a GPU (make CUDA=1) or on the emulator.
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

// x, y: (rows, cols). Block b computes row b with blockDim.x threads (a power
// of two): thread t handles columns t, t + blockDim.x, ... Why this is fast:
// one pass over the row per step, consecutive threads on consecutive columns
// (coalesced), and the reduction across threads in on-chip shared memory,
// halving the active threads each step (log2(blockDim.x) steps).
__global__ void softmax_rows_kernel(const float* x, float* y, int64_t cols) {
  ATTEND_DYNAMIC_SHARED(float, partial);  // blockDim.x floats: one partial result per thread
  const int64_t row = blockIdx.x;
  const float* x_row = x + row * cols;
  float* y_row = y + row * cols;
  const unsigned t = threadIdx.x, threads = blockDim.x;

  // 1. The row's maximum: each thread over its columns, then a tree in
  //    shared memory (threads/2 pairs, then threads/4, ...).
  float thread_max = -INFINITY;
  for (int64_t j = t; j < cols; j += threads) thread_max = fmaxf(thread_max, x_row[j]);
  partial[t] = thread_max;
  __syncthreads();
  for (unsigned half = threads / 2; half > 0; half /= 2) {
    if (t < half) partial[t] = fmaxf(partial[t], partial[t + half]);
    __syncthreads();  // outside the `if`: every thread reaches it
  }
  const float row_max = partial[0];
  __syncthreads();  // everyone has read partial[0] before it is overwritten

  // 2. exp(x - max) into y, and the row's sum of them, reduced the same way.
  float thread_sum = 0.0f;
  for (int64_t j = t; j < cols; j += threads) {
    const float e = expf(x_row[j] - row_max);
    y_row[j] = e;
    thread_sum += e;
  }
  partial[t] = thread_sum;
  __syncthreads();
  for (unsigned half = threads / 2; half > 0; half /= 2) {
    if (t < half) partial[t] += partial[t + half];
    __syncthreads();
  }
  const float inverse_sum = 1.0f / partial[0];

  // 3. Normalise (each thread its own columns: no barrier needed).
  for (int64_t j = t; j < cols; j += threads) y_row[j] *= inverse_sum;
}

void softmax_rows_device(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw Error("softmax_rows_device: x (" + std::to_string(rows) + ", " + std::to_string(cols) +
                "): sizes must be >= 0");
  }
  if (rows * cols == 0) return;
  if (x == nullptr || y == nullptr) throw Error("softmax_rows_device: a null device pointer");
  if (rows > 0x7fffffff) throw Error("softmax_rows_device: more than 2^31 - 1 rows");
  // Threads per row: a power of two from 32 (one warp) to 256, about cols.
  unsigned threads = 32;
  while (threads < 256 && threads < cols) threads *= 2;
  ATTEND_LAUNCH(softmax_rows_kernel, dim3(static_cast<unsigned>(rows)), dim3(threads),
                threads * sizeof(float), x, y, cols);
}

}  // namespace attend::kernels
