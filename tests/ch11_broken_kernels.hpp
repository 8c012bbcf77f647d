// Chapter 11's deliberately broken kernels (tests/ch11_broken_kernels.cu),
// each with one classic CUDA mistake, for tests/ch11_cuda.cpp to prove that
// the emulator finds it. All pointers are device pointers.
#pragma once

#include <cstdint>

#include "attend/kernels.hpp"

namespace attend_test::broken {

using attend::kernels::StridedMatrices;

// sgemm_3_shared_tiles without the __syncthreads after loading the tiles:
// threads read tile elements that others have not written yet.
void sgemm_3_no_barrier_after_load(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                   int64_t K, int64_t N);
// ... without the __syncthreads before the tiles are overwritten: a fast
// thread loads the next tile while slower ones still read the current one.
void sgemm_3_no_barrier_before_overwrite(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                         int64_t K, int64_t N);
// ... with the threads off the edge of c returning at once, before the
// barriers the others wait at.
void sgemm_3_early_return(StridedMatrices a, StridedMatrices b, float* c, int64_t M, int64_t K,
                          int64_t N);
// Even and odd threads wait at two different __syncthreads. out: (64,)
void different_barriers(float* out);
// One thread per element of out (n,), in blocks of 32, without `if (i < n)`:
// writes past the end of out unless n is a multiple of 32.
void write_without_bounds_check(float* out, int64_t n);
// A static __shared__ float[32] written at threadIdx.x + 1 by 32 threads. out: (32,)
void static_shared_off_by_one(float* out);
// Dynamic shared memory of 32 floats read at index 32. out: (32,)
void dynamic_shared_off_by_one(float* out);
// out[i] = i with blocks of `threads_per_block` threads (the launch checks it). out: (n,)
void fill_with_blocks_of(float* out, int64_t n, unsigned threads_per_block);

}  // namespace attend_test::broken
