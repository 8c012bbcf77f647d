// ATTEND_HOST_DEVICE: marks an inline function that both CPU code and CUDA
// kernels call (__host__ __device__ under nvcc, nothing for g++ or clang++,
// which also build the kernels for the emulator). Chapters 11 and 12
// (docs/11-cuda.md): the one definition of a formula both devices share.
#pragma once

#if defined(__CUDACC__)
#define ATTEND_HOST_DEVICE __host__ __device__
#else
#define ATTEND_HOST_DEVICE
#endif
