// Sums on the device, deterministic: one thread per output element, adding
// its inputs one after another in a fixed order, with no atomics (a float
// atomicAdd sums in whatever order the threads arrive, so the bits change
// from run to run). The same order as the CPU loops, so the same bits too.
// A thread per output is slow for a few long sums (the whole loss of a step
// is summed by one thread); a tree inside a block (softmax.cu) is the next
// step. Also each row's first maximum (max, argmax) and max's backward.
// Chapter 11 (docs/11-cuda.md, "Tensors on the device"); the CPU twins are
// reduce_sum and position_of_max (src/ops/reduction.cpp) and sum_to_shape
// (src/autograd/engine.cpp).
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/row_kernels.hpp"

namespace attend::kernels {

constexpr unsigned kSumThreads = 256;

// x: (rows, row_size) contiguous -> out: (rows); a double accumulator, as on the CPU.
__global__ void sum_rows_kernel(const float* x, float* out, int64_t rows, int64_t row_size,
                                double divisor) {
  const int64_t row = global_thread_index();
  if (row >= rows) return;
  double sum = 0.0;
  for (int64_t k = 0; k < row_size; ++k) sum += x[row * row_size + k];
  out[row] = static_cast<float>(sum / divisor);
}

// Thread i sums the grad elements that were broadcast from out[i]: it starts
// at the element where the summed dims are 0 (kept_strides walk out's
// index in grad) and walks the summed dims in row-major order.
__global__ void sum_to_shape_kernel(const float* grad, DeviceShape out_shape,
                                    DeviceStrides kept_strides, DeviceShape summed_shape,
                                    DeviceStrides summed_strides, int64_t summed_count, float* out,
                                    int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  const float* first = grad + strided_offset(out_shape, kept_strides, i);
  float sum = 0.0f;
  for (int64_t j = 0; j < summed_count; ++j) sum += first[strided_offset(summed_shape, summed_strides, j)];
  out[i] = sum;
}

// x: (rows, R) contiguous: thread r finds its row's first maximum
// (first_max_position, as position_of_max on the CPU).
__global__ void max_rows_kernel(const float* x, int64_t rows, int64_t R, float* values, int64_t* positions) {
  const int64_t row = global_thread_index();
  if (row >= rows) return;
  const int64_t best = first_max_position(x + row * R, R);
  positions[row] = best;
  if (values != nullptr) values[row] = x[row * R + best];
}

// max's backward: thread r writes its whole row of grad_x, g[r] at the maximum.
__global__ void max_rows_backward_kernel(const float* g, const int64_t* positions, int64_t rows, int64_t R,
                                         float* grad_x) {
  const int64_t row = global_thread_index();
  if (row >= rows) return;
  for (int64_t k = 0; k < R; ++k) grad_x[row * R + k] = k == positions[row] ? g[row] : 0.0f;
}

void sum_rows_device(const float* x, float* out, int64_t rows, int64_t row_size, double divisor) {
  if (rows <= 0) return;
  ATTEND_LAUNCH(sum_rows_kernel, blocks_for(rows, kSumThreads), dim3(kSumThreads), 0, x, out, rows, row_size,
                divisor);
}

void sum_to_shape_device(const float* grad, const DeviceShape& grad_shape,
                         const DeviceStrides& grad_strides, float* out,
                         const DeviceShape& out_shape) {
  // Split grad's dims into those out keeps (same size) and those summed away
  // (the leading ones, and where out has 1).
  const int lead = grad_shape.rank - out_shape.rank;
  if (lead < 0) throw Error("sum_to_shape_device: the output has more dims than the gradient");
  DeviceStrides kept_strides;
  DeviceShape summed_shape;
  DeviceStrides summed_strides;
  int64_t count = 1, summed_count = 1;
  for (int d = 0; d < grad_shape.rank; ++d) {
    const int64_t size = grad_shape.sizes[d];
    if (d >= lead && out_shape.sizes[d - lead] == size) {
      kept_strides.values[d - lead] = grad_strides.values[d];
      count *= size;
    } else if (d >= lead && out_shape.sizes[d - lead] != 1) {
      throw Error("sum_to_shape_device: an output dim of size " +
                  std::to_string(out_shape.sizes[d - lead]) + " faces a gradient dim of size " +
                  std::to_string(size));
    } else {
      summed_shape.sizes[summed_shape.rank] = size;
      summed_strides.values[summed_shape.rank] = grad_strides.values[d];
      ++summed_shape.rank;
      summed_count *= size;
    }
  }
  if (count == 0) return;
  if (summed_count == 0) return fill_device(out, count, 0.0f);  // an empty sum is 0
  ATTEND_LAUNCH(sum_to_shape_kernel, blocks_for(count, kSumThreads), dim3(kSumThreads), 0, grad, out_shape,
                kept_strides, summed_shape, summed_strides, summed_count, out, count);
}

void max_rows_device(const float* x, int64_t rows, int64_t R, float* values, int64_t* positions) {
  if (rows <= 0) return;
  ATTEND_LAUNCH(max_rows_kernel, blocks_for(rows, kSumThreads), dim3(kSumThreads), 0, x, rows, R, values,
                positions);
}

void max_rows_backward_device(const float* g, const int64_t* positions, int64_t rows, int64_t R, float* grad_x) {
  if (rows <= 0) return;
  ATTEND_LAUNCH(max_rows_backward_kernel, blocks_for(rows, kSumThreads), dim3(kSumThreads), 0, g, positions,
                rows, R, grad_x);
}

}  // namespace attend::kernels
