// The host side of chapter 11's CUDA kernels (src/kernels/*.cu): device
// memory, the ladder of SGEMM kernels and the row softmax. Built with
// `make CUDA=1` they run on an NVIDIA GPU; in the default build the very same
// kernel sources run on the CUDA emulator (attend/cuda_emulator.hpp). No CUDA
// type appears here, so any C++ file may include it. docs/11-cuda.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "attend/error.hpp"
#include "attend/attention_kernels.hpp"
#include "attend/device_op_kernels.hpp"  // softmax along a dim, layer norm, dropout, gathers, ...
#include "attend/elementwise_kernels.hpp"
#include "attend/kernels.hpp"

namespace attend::kernels {

// --- the device ------------------------------------------------------------------

// True when built with CUDA=1: the kernels run on a GPU, not on the emulator.
bool running_on_gpu();

// The GPU's name (e.g. "NVIDIA H100 80GB HBM3"), or the emulator's.
std::string device_name();

// Why no GPU can be used ("no CUDA-capable device is detected", CUDA's
// words), or "" when one can; always "" on the emulator.
std::string gpu_unavailable_reason();

// cudaMalloc, cudaFree, cudaMemcpy and cudaDeviceSynchronize, throwing
// attend::Error when CUDA reports a failure. Host code never reads device
// memory directly: it copies it back first.
void* device_allocate(size_t bytes);
void device_free(void* device_pointer);
void copy_to_device(void* device_destination, const void* host_source, size_t bytes);
void copy_to_host(void* host_destination, const void* device_source, size_t bytes);
void device_synchronize();

// An array of `size` T in device memory, freed with it. Fresh device memory
// holds garbage on a GPU and NaN on the emulator.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t size) : size_(checked_size(size)), data_(allocate(size_)) {}
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(static_cast<int64_t>(host.size())) {
    copy_to_device(data_, host.data(), bytes());
  }
  DeviceArray(DeviceArray&& other) noexcept
      : size_(std::exchange(other.size_, 0)), data_(std::exchange(other.data_, nullptr)) {}
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    std::swap(size_, other.size_);
    std::swap(data_, other.data_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { device_free(data_); }

  T* data() const { return data_; }
  int64_t size() const { return size_; }

  std::vector<T> to_host() const {
    std::vector<T> host(static_cast<size_t>(size_));
    copy_to_host(host.data(), data_, bytes());
    return host;
  }

 private:
  static int64_t checked_size(int64_t size) {
    if (size < 0) throw Error("DeviceArray: size must be >= 0, got " + std::to_string(size));
    return size;
  }
  static T* allocate(int64_t size) {
    return static_cast<T*>(device_allocate(static_cast<size_t>(size) * sizeof(T)));
  }
  size_t bytes() const { return static_cast<size_t>(size_) * sizeof(T); }

  int64_t size_;
  T* data_;
};

// --- SGEMM: the ladder (src/kernels/matmul.cu) -----------------------------------------

// c[i] (M, N) = a[i] (M, K) @ b[i] (K, N) for i < batch, on the device: the
// contract of matmul_strided (chapter 10), with every pointer (the data and
// offsets of a and b, and c) in device memory. a and b are read through their
// strides, so a transposed view needs no copy; c is contiguous (batch, M, N).
using DeviceMatmul = void (*)(StridedMatrices a, StridedMatrices b, float* c, int64_t batch,
                              int64_t M, int64_t K, int64_t N);

// 1: one thread per element of c, consecutive threads down a column of c.
void sgemm_1_naive(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                   int64_t K, int64_t N);
// 2: the same with consecutive threads along a row of c: coalesced loads.
void sgemm_2_coalesced(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                       int64_t K, int64_t N);
// 3: 32x32 tiles of a and b staged in shared memory, __syncthreads between.
void sgemm_3_shared_tiles(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                          int64_t K, int64_t N);
// 4: 128x128 tiles per block, an 8x8 block of c in registers per thread.
void sgemm_4_register_tiles(StridedMatrices a, StridedMatrices b, float* c, int64_t batch,
                            int64_t M, int64_t K, int64_t N);

struct SgemmVersion {
  int number;
  const char* name;  // "sgemm_3_shared_tiles"
  const char* idea;  // one line: what this step changes
  DeviceMatmul run;
};

// The four versions in order, for the tests, the tutorial and the benchmark.
const std::vector<SgemmVersion>& sgemm_ladder();

// --- the row softmax (src/kernels/softmax.cu) ---------------------------------------------

// y (rows, cols) = softmax of each row of x (rows, cols), both contiguous in
// device memory: one block per row, a shared-memory max and sum reduction.
// softmax_rows_reference (kernels.hpp) is its CPU twin.
void softmax_rows_device(const float* x, float* y, int64_t rows, int64_t cols);

// --- tensors on the device: elementwise ops, copies, sums -------------------------------
// (src/kernels/elementwise.cu, src/kernels/reduction.cu; docs/11-cuda.md,
// "Tensors on the device"). Every pointer is in device memory and points at
// element (0, 0, ...) of its operand; outputs are contiguous unless strides
// are given. One thread per output element, each summing in a fixed order:
// no atomics, so every result has the same bits on every run.

// out (contiguous, `shape`) = op(x), x read through x_strides (0 along a
// broadcast dim). `scalar` is pow's exponent.
void unary_device(UnaryOp op, float scalar, const float* x, const DeviceStrides& x_strides,
                  float* out, const DeviceShape& shape);
// out (contiguous, `shape`) = a op b, both read through their strides. out
// may be a itself when a is contiguous (each thread reads, then writes, its
// own element).
void binary_device(BinaryOp op, float scalar, const float* a, const DeviceStrides& a_strides,
                   const float* b, const DeviceStrides& b_strides, float* out,
                   const DeviceShape& shape);
// destination = source, element by element over `shape`, each read and written
// through its strides: contiguous(), clone(), copy_into(). The destination
// must not repeat an element (no stride 0 over a dim longer than 1).
void copy_strided_device(const float* source, const DeviceStrides& source_strides,
                         float* destination, const DeviceStrides& destination_strides,
                         const DeviceShape& shape);
void copy_strided_device(const int64_t* source, const DeviceStrides& source_strides,
                         int64_t* destination, const DeviceStrides& destination_strides,
                         const DeviceShape& shape);
// out[i] = value for i < count.
void fill_device(float* out, int64_t count, float value);
// out[r] = (x[r][0] + x[r][1] + ... + x[r][row_size - 1]) / divisor for
// r < rows, x contiguous (rows, row_size), summed in double from k = 0 up:
// reduce_sum's order on the CPU (src/ops/reduction.cpp), so the same bits.
void sum_rows_device(const float* x, float* out, int64_t rows, int64_t row_size, double divisor);
// out (contiguous, out_shape) = grad summed over the dims that broadcasting
// stretched (out_shape right-aligned with grad_shape; its dims are 1 or
// grad's size): the gradient of a broadcast input. Each out element is summed
// in float in grad's row-major order, as sum_to_shape does on the CPU.
void sum_to_shape_device(const float* grad, const DeviceShape& grad_shape,
                         const DeviceStrides& grad_strides, float* out,
                         const DeviceShape& out_shape);

// --- chapter 12: tiled attention (src/kernels/attention.cu) ------------------------------

// attention_forward_tiled's forward (attention_kernels.hpp) on the device:
// the same arguments, every pointer (q, k, v, out, log_sum_exp and
// masking.key_blocked) in device memory; no dropout. One block of 32 threads
// per 32 queries of a head, one query per thread; tiles of 32 keys and
// values in shared memory. D and Dv at most 128. docs/12-scaling-attention.md.
void attention_forward_device(HeadRows q, HeadRows k, HeadRows v, float* out, float* log_sum_exp,
                              const AttentionSizes& sizes, const AttentionMasking& masking);

}  // namespace attend::kernels
