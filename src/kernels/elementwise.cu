// Elementwise CUDA kernels for tensors on the device: one thread per output
// element, each finding its inputs through their strides (so views and
// broadcasting need no copies), the op chosen by a switch over UnaryOp /
// BinaryOp whose formulas the CPU loops share (attend/elementwise_kernels.hpp).
// Also the strided copy (contiguous(), clone()) and the fill. Chapter 11
// (docs/11-cuda.md, "Tensors on the device"); the CPU twins are the loops
// of src/ops/op_helpers.hpp and copy_into (src/tensor/tensor.cpp).
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

// Consecutive threads take consecutive output elements: the stores are
// coalesced, and so are the loads of contiguous inputs.
constexpr unsigned kElementwiseThreads = 256;

__global__ void unary_strided_kernel(UnaryOp op, float scalar, const float* x,
                                     DeviceStrides x_strides, float* out, DeviceShape shape,
                                     int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;  // the last block overhangs the end
  out[i] = unary_value(op, x[strided_offset(shape, x_strides, i)], scalar);
}

__global__ void binary_strided_kernel(BinaryOp op, float scalar, const float* a,
                                      DeviceStrides a_strides, const float* b,
                                      DeviceStrides b_strides, float* out, DeviceShape shape,
                                      int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  out[i] = binary_value(op, a[strided_offset(shape, a_strides, i)],
                        b[strided_offset(shape, b_strides, i)], scalar);
}

template <typename T>
__global__ void copy_strided_kernel(const T* source, DeviceStrides source_strides, T* destination,
                                    DeviceStrides destination_strides, DeviceShape shape,
                                    int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  destination[strided_offset(shape, destination_strides, i)] =
      source[strided_offset(shape, source_strides, i)];
}

__global__ void fill_kernel(float* out, int64_t count, float value) {
  const int64_t i = global_thread_index();
  if (i < count) out[i] = value;
}

// --- the host side ------------------------------------------------------------------

namespace {

template <typename T>
void copy_strided(const T* source, const DeviceStrides& source_strides, T* destination,
                  const DeviceStrides& destination_strides, const DeviceShape& shape) {
  const int64_t count = element_count(shape);
  if (count == 0) return;  // nothing to copy (an empty tensor's strides may be 0)
  for (int d = 0; d < shape.rank; ++d) {
    if (destination_strides.values[d] == 0 && shape.sizes[d] > 1) {
      throw Error("copy_strided_device: the destination repeats an element (stride 0 along dim " +
                  std::to_string(d) + "); threads would race to write it");
    }
  }
  ATTEND_LAUNCH(copy_strided_kernel<T>, blocks_for(count, kElementwiseThreads), dim3(kElementwiseThreads), 0,
                source, source_strides, destination, destination_strides, shape, count);
}

}  // namespace

void unary_device(UnaryOp op, float scalar, const float* x, const DeviceStrides& x_strides,
                  float* out, const DeviceShape& shape) {
  const int64_t count = element_count(shape);
  if (count == 0) return;
  ATTEND_LAUNCH(unary_strided_kernel, blocks_for(count, kElementwiseThreads), dim3(kElementwiseThreads), 0, op,
                scalar, x, x_strides, out, shape, count);
}

void binary_device(BinaryOp op, float scalar, const float* a, const DeviceStrides& a_strides,
                   const float* b, const DeviceStrides& b_strides, float* out,
                   const DeviceShape& shape) {
  const int64_t count = element_count(shape);
  if (count == 0) return;
  ATTEND_LAUNCH(binary_strided_kernel, blocks_for(count, kElementwiseThreads), dim3(kElementwiseThreads), 0, op,
                scalar, a, a_strides, b, b_strides, out, shape, count);
}

void copy_strided_device(const float* source, const DeviceStrides& source_strides,
                         float* destination, const DeviceStrides& destination_strides,
                         const DeviceShape& shape) {
  copy_strided(source, source_strides, destination, destination_strides, shape);
}

void copy_strided_device(const int64_t* source, const DeviceStrides& source_strides,
                         int64_t* destination, const DeviceStrides& destination_strides,
                         const DeviceShape& shape) {
  copy_strided(source, source_strides, destination, destination_strides, shape);
}

void fill_device(float* out, int64_t count, float value) {
  if (count <= 0) return;
  ATTEND_LAUNCH(fill_kernel, blocks_for(count, kElementwiseThreads), dim3(kElementwiseThreads), 0, out, count,
                value);
}

}  // namespace attend::kernels
