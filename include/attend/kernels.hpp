// Kernels: raw loops over float buffers. They know nothing of tensors or
// graphs (pointers, sizes and strides only), so each can be read, tested and
// timed alone. Chapter 3 introduces matmul (the reference loop and the simple
// blocked kernel); chapter 10 (docs/10-speed.md) makes it fast: packing,
// a register-blocked micro-kernel, AVX2 or AVX-512 chosen at run time, OpenMP.
// Chapter 11's CUDA kernels (attend/gpu_kernels.hpp) are tested against these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attend/host_device.hpp"

namespace attend::kernels {

// c (M, N) = a (M, K) @ b (K, N), row-major. The textbook triple loop: the
// reference every faster version is tested against.
void matmul_reference(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N);

// One operand of a batched product, read through strides: element (r, col)
// of matrix i is data[offsets[i] + r * row_stride + col * col_stride].
// A row-major (R, C) matrix has strides (C, 1); its transpose, viewed without
// copying, has strides (1, C). A broadcast batch dim repeats an offset.
struct StridedMatrices {
  const float* data;
  const int64_t* offsets;  // one per matrix of the batch
  int64_t row_stride;
  int64_t col_stride;
};

// The fast kernel (chapter 10): c[i] = a[i] @ b[i] for i < batch, with a[i]
// (M, K), b[i] (K, N) read through their strides and c contiguous
// (batch, M, N). It packs blocks of a and b into contiguous buffers, runs a
// register-blocked micro-kernel (14x32 with AVX-512, 6x16 with AVX2 + FMA,
// chosen at run time; 6x16 in plain C++ elsewhere) and splits the work among
// OpenMP threads. Each element of c is summed in the same order whatever the
// number of threads (and the AVX2 and AVX-512 kernels round alike), so the
// result does not depend on it. With a `bias` (N floats), each row of each
// c then gets it added: c[p][i][j] = sum + bias[j], the bits of the sum
// and a separate add, done while the thread's part of c is in its cache
// (attend::linear's bias).
void matmul_strided(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                    int64_t K, int64_t N, const float* bias = nullptr);

// The same with every matrix contiguous (row-major): matrix i of a starts at
// a + a_offsets[i], of b at b + b_offsets[i]. Calls matmul_strided.
void matmul_batched(const float* a, const int64_t* a_offsets, const float* b,
                    const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                    int64_t N);

// Chapter 3's kernel, kept for comparison (tutorial 10 times it beside
// matmul_batched): loops in i, k, j order so the innermost loop walks rows of
// b and c with stride 1, blocked over k, (batch, row block) pairs shared among
// OpenMP threads. Same arguments as matmul_batched.
void matmul_blocked_simple(const float* a, const int64_t* a_offsets, const float* b,
                           const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                           int64_t N);

// Which micro-kernel matmul_strided runs: "avx512" on an x86-64 CPU that has
// AVX-512F, else "avx2+fma" where the CPU has those, else "portable" (plain
// C++ the compiler vectorizes for the baseline instruction set: SSE2 on
// x86-64, NEON on ARM).
const char* matmul_kernel_name();

// Chapter 11: y (rows, cols) = softmax of each row of x (rows, cols), both
// contiguous: exp(x - row max) / sum. The reference for the CUDA row softmax
// (softmax_rows_device in attend/gpu_kernels.hpp).
void softmax_rows_reference(const float* x, float* y, int64_t rows, int64_t cols);

// The micro-kernels this CPU can run, slowest first (always "portable";
// then "avx2+fma" and "avx512" where the CPU has them).
std::vector<std::string> matmul_runnable_kernels();

// For tests and for measuring what each instruction set buys: makes
// matmul_strided use the named kernel; "" restores the default (the fastest).
// Returns false, changing nothing, for a name not in matmul_runnable_kernels().
// Chapter 12's attention kernels (attention_kernels.hpp) follow the portable
// choice too (they ask matmul_kernel_name()).
// Set it between calls, not while a matmul runs.
bool matmul_use_kernel(const std::string& name);

// matmul_use_kernel("portable") for true, matmul_use_kernel("") for false.
void matmul_force_portable(bool force);

// --- random bits (chapter 1's Generator; chapter 12's attention dropout) ---

// SplitMix64's output function: scrambles a counter value into 64 random
// bits. Generator steps its state by kSplitMix64Step and returns mix(state),
// so draw n (counting from 1) of a generator at state s is
// splitmix64_mix(s + n * kSplitMix64Step): computable without the draws
// before it (a counter-based generator).
constexpr uint64_t kSplitMix64Step = 0x9E3779B97F4A7C15ull;  // the golden ratio in 64-bit fixed point
ATTEND_HOST_DEVICE inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform in [0, 1) from the top 24 bits, the precision of a float. (Through
// int32: the same number, as it is below 2^24, but x86 converts int32 to
// float in vector registers, and unsigned 64-bit integers only from AVX-512.)
ATTEND_HOST_DEVICE inline float uniform_from_bits(uint64_t bits) {
  return static_cast<float>(static_cast<int32_t>(bits >> 40)) * (1.0f / 16777216.0f);
}
// Uniform number i + 1 of the stream of a generator at `state` (i = 0 is its
// next one), computed without drawing the ones before: Generator::uniform_at,
// and what a CUDA thread evaluates at its own index (dropout on the device).
ATTEND_HOST_DEVICE inline float counter_uniform(uint64_t state, uint64_t i) {
  return uniform_from_bits(splitmix64_mix(state + (i + 1) * kSplitMix64Step));
}

// Dropout's forward on elements [begin, end) (chapter 10): keep[i] = the
// (i+1)-th draw of a Generator at `state` >= p, out[i] = in[i] * scale where
// kept, else 0. dropout_forward runs the AVX-512 build of the loop where the
// CPU has it and the matmul runs its AVX-512 kernel, else the portable one;
// both give the same bytes (the tests compare them).
void dropout_forward(uint64_t state, float p, float scale, const float* in, float* out, uint8_t* keep,
                     int64_t begin, int64_t end);
void dropout_forward_portable(uint64_t state, float p, float scale, const float* in, float* out,
                              uint8_t* keep, int64_t begin, int64_t end);
void dropout_forward_avx512(uint64_t state, float p, float scale, const float* in, float* out,
                            uint8_t* keep, int64_t begin, int64_t end);
bool dropout_forward_avx512_runs();  // this CPU has AVX-512 F, DQ and VL

}  // namespace attend::kernels
