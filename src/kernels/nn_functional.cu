// Layer norm, dropout and cross-entropy on the device, forward and backward:
// a thread per row where a row is reduced, per column for the sums down the
// rows, per element otherwise; every sum in the CPU loop's order, no atomics.
// Chapter 11 (docs/11-cuda.md, "Tensors on the device"); the CPU twins are in
// src/ops/nn_functional.cpp, the shared per-row math in attend/row_kernels.hpp.
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/row_kernels.hpp"

namespace attend::kernels {

constexpr unsigned kThreadsPerBlock = 256;

// --- layer norm ---------------------------------------------------------------------

__global__ void layer_norm_kernel(const float* x, const float* weight, const float* bias, int64_t rows,
                                  int64_t C, float eps, float* out, float* normalized, float* inverse_std) {
  const int64_t r = global_thread_index();
  if (r >= rows) return;
  const float* row = x + r * C;
  double mean = 0.0;
  float inv_std = 0.0f;
  layer_norm_row_statistics(row, C, eps, mean, inv_std);
  inverse_std[r] = inv_std;
  for (int64_t c = 0; c < C; ++c) {
    const float x_hat = layer_norm_normalized(row[c], mean, inv_std);
    normalized[r * C + c] = x_hat;
    out[r * C + c] = x_hat * weight[c] + bias[c];
  }
}

// dx = s (h - mean(h) - x_hat mean(h x_hat)), h = g * weight, s = 1/std, per
// row, the means in double. (The CPU's loop is exercise 3.2, for the
// learner to write in src/ops/nn_functional.cpp; the same order here.)
__global__ void layer_norm_dx_kernel(const float* g, const float* normalized, const float* inverse_std,
                                     const float* weight, int64_t rows, int64_t C, float* dx) {
  const int64_t r = global_thread_index();
  if (r >= rows) return;
  const float* g_row = g + r * C;
  const float* x_hat = normalized + r * C;
  double mean_h = 0.0, mean_h_x_hat = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double h = static_cast<double>(g_row[c]) * weight[c];
    mean_h += h;
    mean_h_x_hat += h * x_hat[c];
  }
  mean_h /= static_cast<double>(C);
  mean_h_x_hat /= static_cast<double>(C);
  for (int64_t c = 0; c < C; ++c) {
    const double h = static_cast<double>(g_row[c]) * weight[c];
    dx[r * C + c] = static_cast<float>(inverse_std[r] * (h - mean_h - x_hat[c] * mean_h_x_hat));
  }
}

// dweight[c] = sum over rows of g x_hat, dbias[c] = sum of g: thread c walks
// its column down the rows, in float, from row 0 (the CPU's strips do the
// same per column). Consecutive threads read consecutive columns: coalesced.
__global__ void layer_norm_dweight_kernel(const float* g, const float* normalized, int64_t rows, int64_t C,
                                          float* dweight, float* dbias) {
  const int64_t c = global_thread_index();
  if (c >= C) return;
  float dw = 0.0f, db = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    dw += g[r * C + c] * normalized[r * C + c];
    db += g[r * C + c];
  }
  dweight[c] = dw;
  dbias[c] = db;
}

// --- dropout --------------------------------------------------------------------------

__global__ void dropout_kernel(const float* x, int64_t n, uint64_t state, float p, float scale, uint8_t* kept,
                               float* out) {
  const int64_t i = global_thread_index();
  if (i >= n) return;
  kept[i] = dropout_keeps(state, static_cast<uint64_t>(i), p);
  out[i] = dropout_scaled(x[i], kept[i], scale);
}

__global__ void dropout_backward_kernel(const float* g, const uint8_t* kept, int64_t n, float scale,
                                        float* dx) {
  const int64_t i = global_thread_index();
  if (i < n) dx[i] = dropout_scaled(g[i], kept[i], scale);
}

// --- cross-entropy --------------------------------------------------------------------

__global__ void cross_entropy_rows_kernel(const float* log_probs, const int64_t* targets, int64_t rows,
                                          int64_t C, int64_t ignore_index, double label_smoothing,
                                          double* row_loss) {
  const int64_t r = global_thread_index();
  if (r >= rows) return;
  row_loss[r] = targets[r] == ignore_index
                    ? 0.0
                    : cross_entropy_row_loss(log_probs + r * C, C, targets[r], label_smoothing);
}

// One thread: the mean of the rows' losses, added in row order in double as
// on the CPU (cross_entropy_mean). A batch has a few thousand rows: a tree in
// one block would be faster, in a fixed order too.
__global__ void cross_entropy_mean_kernel(const double* row_loss, const int64_t* targets, int64_t rows,
                                          int64_t ignore_index, float* loss, int64_t* counted) {
  if (global_thread_index() != 0) return;
  *loss = cross_entropy_mean(row_loss, targets, rows, ignore_index, *counted);
}

// One thread per logit: (exp(log p) - q) * loss_grad / counted. (The CPU's
// loop is exercise 3.3 in src/ops/nn_functional.cpp; the same arithmetic.)
__global__ void cross_entropy_backward_kernel(const float* log_probs, const int64_t* targets, int64_t rows,
                                              int64_t C, int64_t ignore_index, double label_smoothing,
                                              const int64_t* counted, const float* loss_grad, float* grad) {
  const int64_t i = global_thread_index();
  if (i >= rows * C) return;
  const int64_t r = i / C, c = i % C;
  if (targets[r] == ignore_index) {
    grad[i] = 0.0f;
    return;
  }
  // The CPU's arithmetic (src/ops/nn_functional.cpp), element by element:
  // (softmax - q) * scale in float, q = e/C off the target, 1 - e + e/C on it.
  const float scale = *counted > 0 ? static_cast<float>(*loss_grad / static_cast<double>(*counted)) : 0.0f;
  const float q = c == targets[r] ? static_cast<float>(1.0 - label_smoothing + label_smoothing / static_cast<double>(C))
                                  : static_cast<float>(label_smoothing / static_cast<double>(C));
  grad[i] = (softmax_exp(log_probs[i]) - q) * scale;
}

// --- the host side ------------------------------------------------------------------

void layer_norm_device(const float* x, const float* weight, const float* bias, int64_t rows, int64_t C,
                       float eps, float* out, float* normalized, float* inverse_std) {
  if (rows <= 0) return;
  ATTEND_LAUNCH(layer_norm_kernel, blocks_for(rows, kThreadsPerBlock), dim3(kThreadsPerBlock), 0, x, weight,
                bias, rows, C, eps, out, normalized, inverse_std);
}

void layer_norm_backward_device(const float* g, const float* normalized, const float* inverse_std,
                                const float* weight, int64_t rows, int64_t C, float* dx, float* dweight,
                                float* dbias) {
  if (C <= 0) return;
  if (rows > 0) {
    ATTEND_LAUNCH(layer_norm_dx_kernel, blocks_for(rows, kThreadsPerBlock), dim3(kThreadsPerBlock), 0, g,
                  normalized, inverse_std, weight, rows, C, dx);
  }
  ATTEND_LAUNCH(layer_norm_dweight_kernel, blocks_for(C, kThreadsPerBlock), dim3(kThreadsPerBlock), 0, g,
                normalized, rows, C, dweight, dbias);
}

void dropout_device(const float* x, int64_t n, uint64_t state, float p, float scale, uint8_t* kept,
                    float* out) {
  if (n <= 0) return;
  ATTEND_LAUNCH(dropout_kernel, blocks_for(n, kThreadsPerBlock), dim3(kThreadsPerBlock), 0, x, n, state, p,
                scale, kept, out);
}

void dropout_backward_device(const float* g, const uint8_t* kept, int64_t n, float scale, float* dx) {
  if (n <= 0) return;
  ATTEND_LAUNCH(dropout_backward_kernel, blocks_for(n, kThreadsPerBlock), dim3(kThreadsPerBlock), 0, g, kept, n,
                scale, dx);
}

void cross_entropy_device(const float* log_probs, const int64_t* targets, int64_t rows, int64_t C,
                          int64_t ignore_index, double label_smoothing, double* row_loss, float* loss,
                          int64_t* counted) {
  if (rows > 0) {
    ATTEND_LAUNCH(cross_entropy_rows_kernel, blocks_for(rows, kThreadsPerBlock), dim3(kThreadsPerBlock), 0,
                  log_probs, targets, rows, C, ignore_index, label_smoothing, row_loss);
  }
  ATTEND_LAUNCH(cross_entropy_mean_kernel, dim3(1), dim3(1), 0, row_loss, targets, rows, ignore_index, loss,
                counted);
}

void cross_entropy_backward_device(const float* log_probs, const int64_t* targets, int64_t rows, int64_t C,
                                   int64_t ignore_index, double label_smoothing, const int64_t* counted,
                                   const float* loss_grad, float* grad) {
  if (rows * C <= 0) return;
  ATTEND_LAUNCH(cross_entropy_backward_kernel, blocks_for(rows * C, kThreadsPerBlock), dim3(kThreadsPerBlock),
                0, log_probs, targets, rows, C, ignore_index, label_smoothing, counted, loss_grad, grad);
}

}  // namespace attend::kernels
