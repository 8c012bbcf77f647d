// softmax and log_softmax along any dim of a tensor on the device, forward
// and backward: one thread per row along the dim, computing it with the very
// functions the CPU loops call (softmax_row, log_softmax_row in
// attend/row_kernels.hpp). Chapter 11 (docs/11-cuda.md, "Tensors on the
// device"); the CPU twins are in src/ops/softmax.cpp.
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/row_kernels.hpp"

namespace attend::kernels {

// A thread per row, not a block per row as in softmax_rows_kernel: the rows
// of a training step are many and short (B * H * T attention rows of T
// keys), so one thread each fills the GPU, and each row's sums are added in
// the CPU's order.
constexpr unsigned kRowThreads = 128;

__global__ void softmax_along_dim_kernel(RowSoftmax kind, const float* x, DeviceShape rows,
                                         DeviceStrides x_strides, int64_t x_step, float* out,
                                         DeviceStrides out_strides, int64_t out_step, int64_t n,
                                         int64_t row_count) {
  const int64_t r = global_thread_index();
  if (r >= row_count) return;
  const float* in = x + strided_offset(rows, x_strides, r);
  float* o = out + strided_offset(rows, out_strides, r);
  if (kind == RowSoftmax::softmax) {
    softmax_row(in, x_step, o, out_step, n);
  } else {
    log_softmax_row(in, x_step, o, out_step, n);
  }
}

// Row (outer o, inner i) of the contiguous (outer, n, inner) arrays starts at
// o n inner + i and steps by inner. softmax's row is written here: its CPU
// twin, in src/ops/softmax.cpp, is exercise 3.1, for the learner to write;
// the sum in double, in index order, as there.
__global__ void softmax_backward_along_dim_kernel(RowSoftmax kind, const float* y, const float* g, float* dx,
                                                  int64_t outer, int64_t n, int64_t inner) {
  const int64_t r = global_thread_index();
  if (r >= outer * inner) return;
  const int64_t start = (r / inner) * n * inner + r % inner;
  const float* yr = y + start;
  const float* gr = g + start;
  float* d = dx + start;
  if (kind == RowSoftmax::softmax) {  // dx_i = y_i (g_i - sum_j g_j y_j)
    double dot = 0.0;
    for (int64_t i = 0; i < n; ++i) dot += gr[i * inner] * yr[i * inner];
    const float s = static_cast<float>(dot);
    for (int64_t i = 0; i < n; ++i) d[i * inner] = yr[i * inner] * (gr[i * inner] - s);
  } else {
    log_softmax_backward_row(yr, gr, d, inner, n);
  }
}

void softmax_along_dim_device(RowSoftmax kind, const float* x, const DeviceShape& rows,
                              const DeviceStrides& x_strides, int64_t x_step, float* out,
                              const DeviceStrides& out_strides, int64_t out_step, int64_t n) {
  const int64_t row_count = element_count(rows);
  if (row_count == 0 || n == 0) return;
  ATTEND_LAUNCH(softmax_along_dim_kernel, blocks_for(row_count, kRowThreads), dim3(kRowThreads), 0, kind, x,
                rows, x_strides, x_step, out, out_strides, out_step, n, row_count);
}

void softmax_backward_along_dim_device(RowSoftmax kind, const float* y, const float* g, float* dx,
                                       int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0 || n == 0) return;
  ATTEND_LAUNCH(softmax_backward_along_dim_kernel, blocks_for(outer * inner, kRowThreads), dim3(kRowThreads), 0,
                kind, y, g, dx, outer, n, inner);
}

}  // namespace attend::kernels
