// Chapter 11's deliberately broken CUDA kernels: each repeats a correct
// kernel with one classic mistake, so that tests/ch11_cuda.cpp can prove the
// emulator reports it (a barrier not reached by all, a read of shared memory
// before it was written, an out-of-range access under `make sanitize`).
// They compile with nvcc too: every mistake here is legal CUDA.
#include "attend/cuda_or_emulator.hpp"
#include "ch11_broken_kernels.hpp"

namespace attend_test::broken {

namespace {

constexpr int kTile = 32;

__device__ float element(const StridedMatrices& m, int64_t row, int64_t col) {
  return m.data[m.offsets[0] + row * m.row_stride + col * m.col_stride];
}

dim3 tiles(int64_t M, int64_t N) {
  return dim3(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>((M + kTile - 1) / kTile));
}

}  // namespace

// The mistake: no __syncthreads between loading the tiles and reading them.
__global__ void sgemm_3_no_barrier_after_load_kernel(StridedMatrices a, StridedMatrices b, float* c,
                                                     int64_t M, int64_t K, int64_t N) {
  __shared__ float a_tile[kTile][kTile];
  __shared__ float b_tile[kTile][kTile];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  float sum = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    a_tile[ty][tx] = row < M && k0 + tx < K ? element(a, row, k0 + tx) : 0.0f;
    b_tile[ty][tx] = k0 + ty < K && col < N ? element(b, k0 + ty, col) : 0.0f;
    for (int k = 0; k < kTile; ++k) sum += a_tile[ty][k] * b_tile[k][tx];
    __syncthreads();
  }
  if (row < M && col < N) c[row * N + col] = sum;
}

// The mistake: no __syncthreads before the next tiles overwrite these.
__global__ void sgemm_3_no_barrier_before_overwrite_kernel(StridedMatrices a, StridedMatrices b,
                                                           float* c, int64_t M, int64_t K, int64_t N) {
  __shared__ float a_tile[kTile][kTile];
  __shared__ float b_tile[kTile][kTile];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  float sum = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    a_tile[ty][tx] = row < M && k0 + tx < K ? element(a, row, k0 + tx) : 0.0f;
    b_tile[ty][tx] = k0 + ty < K && col < N ? element(b, k0 + ty, col) : 0.0f;
    __syncthreads();
    for (int k = 0; k < kTile; ++k) sum += a_tile[ty][k] * b_tile[k][tx];
  }
  if (row < M && col < N) c[row * N + col] = sum;
}

// The mistake: threads off the edge of c leave before the barriers.
__global__ void sgemm_3_early_return_kernel(StridedMatrices a, StridedMatrices b, float* c,
                                            int64_t M, int64_t K, int64_t N) {
  __shared__ float a_tile[kTile][kTile];
  __shared__ float b_tile[kTile][kTile];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  if (row >= M || col >= N) return;
  float sum = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    a_tile[ty][tx] = k0 + tx < K ? element(a, row, k0 + tx) : 0.0f;
    b_tile[ty][tx] = k0 + ty < K ? element(b, k0 + ty, col) : 0.0f;
    __syncthreads();
    for (int k = 0; k < kTile; ++k) sum += a_tile[ty][k] * b_tile[k][tx];
    __syncthreads();
  }
  c[row * N + col] = sum;
}

// The mistake: a barrier on each side of a branch that splits the block.
__global__ void different_barriers_kernel(float* out) {
  if (threadIdx.x % 2 == 0) {
    out[threadIdx.x] = 0.0f;
    __syncthreads();
  } else {
    out[threadIdx.x] = 1.0f;
    __syncthreads();
  }
}

// The mistake: no `if (i < n)`.
__global__ void write_without_bounds_check_kernel(float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  (void)n;
  out[i] = static_cast<float>(i);
}

// The mistake: index threadIdx.x + 1 in an array of 32.
__global__ void static_shared_off_by_one_kernel(float* out) {
  __shared__ float values[32];
  values[threadIdx.x + 1] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = values[threadIdx.x];
}

// The mistake: reads one float past the dynamic shared memory.
__global__ void dynamic_shared_off_by_one_kernel(float* out) {
  ATTEND_DYNAMIC_SHARED(float, values);
  values[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = values[threadIdx.x + 1];
}

__global__ void fill_kernel(float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<float>(i);
}

void sgemm_3_no_barrier_after_load(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                   int64_t K, int64_t N) {
  ATTEND_LAUNCH(sgemm_3_no_barrier_after_load_kernel, tiles(M, N), dim3(kTile, kTile), 0, a, b, c, M, K, N);
}

void sgemm_3_no_barrier_before_overwrite(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                         int64_t K, int64_t N) {
  ATTEND_LAUNCH(sgemm_3_no_barrier_before_overwrite_kernel, tiles(M, N), dim3(kTile, kTile), 0, a, b, c, M, K, N);
}

void sgemm_3_early_return(StridedMatrices a, StridedMatrices b, float* c, int64_t M, int64_t K,
                          int64_t N) {
  ATTEND_LAUNCH(sgemm_3_early_return_kernel, tiles(M, N), dim3(kTile, kTile), 0, a, b, c, M, K, N);
}

void different_barriers(float* out) { ATTEND_LAUNCH(different_barriers_kernel, dim3(1), dim3(64), 0, out); }

void write_without_bounds_check(float* out, int64_t n) {
  ATTEND_LAUNCH(write_without_bounds_check_kernel, dim3(static_cast<unsigned>((n + 31) / 32)), dim3(32), 0, out, n);
}

void static_shared_off_by_one(float* out) { ATTEND_LAUNCH(static_shared_off_by_one_kernel, dim3(1), dim3(32), 0, out); }

void dynamic_shared_off_by_one(float* out) {
  ATTEND_LAUNCH(dynamic_shared_off_by_one_kernel, dim3(1), dim3(32), 32 * sizeof(float), out);
}

void fill_with_blocks_of(float* out, int64_t n, unsigned threads_per_block) {
  const auto blocks = static_cast<unsigned>((n + threads_per_block - 1) / threads_per_block);
  ATTEND_LAUNCH(fill_kernel, dim3(blocks), dim3(threads_per_block), 0, out, n);
}

}  // namespace attend_test::broken
