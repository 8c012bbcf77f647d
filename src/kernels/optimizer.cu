// The optimizers on the device: SGD's and Adam's update, one thread per
// parameter element, and gradient clipping by the global norm (one thread per
// range of kOptimizerRangeSize elements, then one thread adding the range
// sums in order: no atomics, so the norm has the same bits as on the CPU).
// Each thread runs the function of attend/optimizer_kernels.hpp that the CPU
// loops of src/optim/optim.cpp run. Chapter 11 (docs/11-cuda.md, "Training
// on the device").
#include "attend/cuda_or_emulator.hpp"
#include "attend/optimizer_kernels.hpp"

namespace attend::kernels {

constexpr unsigned kOptimizerThreads = 256;

namespace {

__device__ __forceinline__ int64_t optimizer_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

}  // namespace

// w, g, momentum_buffer: (n); momentum_buffer may be null.
__global__ void sgd_update_kernel(float* w, const float* g, float* momentum_buffer, int64_t n,
                                  SgdConstants c) {
  const int64_t i = optimizer_thread_index();
  if (i >= n) return;
  sgd_update_element(w[i], g[i], momentum_buffer ? momentum_buffer + i : nullptr, c);
}

// w, m, v, g: (n).
template <bool kDecoupled>
__global__ void adam_update_kernel(float* w, float* m, float* v, const float* g, int64_t n,
                                   AdamConstants c) {
  const int64_t i = optimizer_thread_index();
  if (i >= n) return;
  adam_update_element<kDecoupled>(w[i], m[i], v[i], g[i], c);
}

// g: (n) -> range_sums: (ranges). Thread r sums range r, as one CPU thread
// does: a long serial sum (16,384 elements), but few of them and no atomics.
__global__ void sum_of_squares_kernel(const float* g, int64_t n, int64_t ranges,
                                      double* range_sums) {
  const int64_t r = optimizer_thread_index();
  if (r >= ranges) return;
  const int64_t begin = r * kOptimizerRangeSize;
  const int64_t end = begin + kOptimizerRangeSize < n ? begin + kOptimizerRangeSize : n;
  range_sums[r] = sum_of_squares(g, begin, end);
}

// range_sums: (ranges) -> norm_and_scale: (2). One thread: the order is the CPU's.
__global__ void clip_coefficients_kernel(const double* range_sums, int64_t ranges,
                                         float max_norm, float* norm_and_scale) {
  double total = 0.0;
  for (int64_t r = 0; r < ranges; ++r) total += range_sums[r];
  const float norm = static_cast<float>(sqrt(total));
  norm_and_scale[0] = norm;
  norm_and_scale[1] = clip_scale(norm, max_norm);
}

// g: (n) scaled in place by *scale.
__global__ void scale_by_kernel(float* g, int64_t n, const float* scale) {
  const int64_t i = optimizer_thread_index();
  const float s = *scale;
  if (i >= n || s == 1.0f) return;
  g[i] *= s;
}

// --- the host side ------------------------------------------------------------------

namespace {
dim3 blocks_for(int64_t count) {
  return dim3(static_cast<unsigned>((count + kOptimizerThreads - 1) / kOptimizerThreads));
}
}  // namespace

void sgd_update_device(float* w, const float* g, float* momentum_buffer, int64_t n,
                       const SgdConstants& c) {
  if (n <= 0) return;
  ATTEND_LAUNCH(sgd_update_kernel, blocks_for(n), dim3(kOptimizerThreads), 0, w, g,
                momentum_buffer, n, c);
}

void adam_update_device(float* w, float* m, float* v, const float* g, int64_t n,
                        const AdamConstants& c, bool decoupled) {
  if (n <= 0) return;
  if (decoupled) {
    ATTEND_LAUNCH(adam_update_kernel<true>, blocks_for(n), dim3(kOptimizerThreads), 0, w, m, v, g,
                  n, c);
  } else {
    ATTEND_LAUNCH(adam_update_kernel<false>, blocks_for(n), dim3(kOptimizerThreads), 0, w, m, v, g,
                  n, c);
  }
}

void sum_of_squares_device(const float* g, int64_t n, double* range_sums) {
  const int64_t ranges = (n + kOptimizerRangeSize - 1) / kOptimizerRangeSize;
  if (ranges <= 0) return;
  ATTEND_LAUNCH(sum_of_squares_kernel, blocks_for(ranges), dim3(kOptimizerThreads), 0, g, n,
                ranges, range_sums);
}

void clip_coefficients_device(const double* range_sums, int64_t ranges, float max_norm,
                              float* norm_and_scale) {
  ATTEND_LAUNCH(clip_coefficients_kernel, dim3(1), dim3(1), 0, range_sums, ranges, max_norm,
                norm_and_scale);
}

void scale_by_device(float* g, int64_t n, const float* scale) {
  if (n <= 0) return;
  ATTEND_LAUNCH(scale_by_kernel, blocks_for(n), dim3(kOptimizerThreads), 0, g, n, scale);
}

}  // namespace attend::kernels
