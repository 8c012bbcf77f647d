// What every .cu kernel source includes first. Under nvcc: the CUDA runtime.
// Under g++ or clang++: the emulator (attend/cuda_emulator.hpp), which makes
// the same source compile and run on the CPU. Both ways it defines the two
// things plain CUDA spells differently from C++: the launch and dynamic
// shared memory. Chapter 11 (docs/11-cuda.md). Only kernel sources (.cu)
// include this header; the rest of Attend sees attend/gpu_kernels.hpp.
#pragma once

#include <cstdint>
#include <string>

#include "attend/error.hpp"

#ifdef __CUDACC__
#include <cuda_runtime.h>

// kernel<<<grid, block, shared_bytes>>>(...), then a check that it started.
#define ATTEND_LAUNCH(kernel, grid, block, shared_bytes, ...)                  \
  do {                                                                         \
    kernel<<<(grid), (block), (shared_bytes)>>>(__VA_ARGS__);                  \
    attend::kernels::check_cuda(cudaGetLastError(), "launch of " #kernel);     \
  } while (false)

// The block's dynamic shared memory: `shared_bytes` of the launch.
#define ATTEND_DYNAMIC_SHARED(type, name) extern __shared__ type name[]

#else
#include "attend/cuda_emulator.hpp"

#define ATTEND_LAUNCH(kernel, grid, block, shared_bytes, ...) \
  attend::cuda_emulator::launch(#kernel, kernel, (grid), (block), (shared_bytes), __VA_ARGS__)

// The emulator cannot give `extern __shared__ type name[]` a meaning (its
// __shared__ means `static`, and an extern array needs a definition), so the
// name is a pointer to the launch's buffer instead; it indexes the same way.
#define ATTEND_DYNAMIC_SHARED(type, name) \
  type* const name = attend::cuda_emulator::dynamic_shared<type>()
#endif

namespace attend::kernels {

// Throws attend::Error("<what>: <CUDA's message>") unless status is cudaSuccess.
inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string(what) + ": " + cudaGetErrorString(status));
}

// This thread's number in a one-dimensional grid of one-dimensional blocks:
// the kernels that give each thread one element or one row.
__device__ __forceinline__ int64_t global_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Enough blocks of block_size threads for `threads` of them (the last block
// overhangs: its extra threads return at once).
inline dim3 blocks_for(int64_t threads, unsigned block_size) {
  return dim3(static_cast<unsigned>((threads + block_size - 1) / block_size));
}

}  // namespace attend::kernels
