// The per-row math of softmax, log_softmax, layer norm, cross-entropy and the
// first maximum, and dropout's draw, written once: the CPU loops of src/ops/
// and the CUDA kernels of src/kernels/ (one thread per row) call the same
// functions, so both devices agree bit for bit on the emulator. Chapter 3
// teaches the math, chapter 11 the kernels (docs/11-cuda.md, "Tensors on the device").
#pragma once

#include <math.h>  // expf, ::exp, ::log, ::sqrt (attend::exp is the op), INFINITY: host and device

#include <cstdint>

#include "attend/host_device.hpp"
#include "attend/kernels.hpp"  // counter_uniform
#include "attend/softmax_exp.hpp"

namespace attend::kernels {

// --- softmax and log_softmax: one row of n values ------------------------------------
// A row is read at in[0], in[in_step], ..., in[(n - 1) in_step] and written
// at out[0], out[out_step], ...

// The row's maximum (a NaN never replaces it, as with std::max(m, v)).
ATTEND_HOST_DEVICE inline float row_max(const float* in, int64_t in_step, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (in[i * in_step] > m) m = in[i * in_step];
  }
  return m;
}

// sum_c (row[c step] - shift)^power for power 1 or 2, in double, as four
// partial sums (c mod 4) added pairwise at the end. One running sum is a
// chain of dependent additions, each waiting for the one before (~4
// cycles); four independent ones overlap: layer norm's forward of (832, 128)
// took 94-98 us against 188-198 us with one sum (one thread, docs/10).
template <int kPower>
ATTEND_HOST_DEVICE inline double row_sum_in_four_parts(const float* row, int64_t C, double shift,
                                                    int64_t step = 1) {
  const auto term = [shift](float x) {
    const double d = x - shift;
    return kPower == 1 ? d : d * d;
  };
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t c = 0;
  for (; c + 4 <= C; c += 4) {
    s0 += term(row[c * step]);
    s1 += term(row[(c + 1) * step]);
    s2 += term(row[(c + 2) * step]);
    s3 += term(row[(c + 3) * step]);
  }
  for (; c < C; ++c) s0 += term(row[c * step]);
  return (s0 + s1) + (s2 + s3);
}

// y_i = exp(x_i - max) / sum_j exp(x_j - max), the sum in double. A row that
// is all -inf (a fully masked attention row) has no distribution: zeros, not 0/0.
ATTEND_HOST_DEVICE inline void softmax_row(const float* in, int64_t in_step, float* out,
                                           int64_t out_step, int64_t n) {
  const float m = row_max(in, in_step, n);
  if (m == -INFINITY) {
    for (int64_t i = 0; i < n; ++i) out[i * out_step] = 0.0f;
    return;
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    out[i * out_step] = expf(in[i * in_step] - m);
    total += out[i * out_step];
  }
  const float inverse = static_cast<float>(1.0 / total);
  for (int64_t i = 0; i < n; ++i) out[i * out_step] *= inverse;
}

// out_i = exp(in_i - shift) for in_i <= shift (softmax_exp, chapter 12's
// vectorizable exp). On the CPU a unit-stride row goes to softmax_exp_row,
// whose AVX-512 build does 16 at once; device code and strided rows go one
// element at a time.
ATTEND_HOST_DEVICE inline void shifted_exp_row(const float* in, int64_t in_step, float shift, float* out,
                                               int64_t out_step, int64_t n) {
#if !defined(__CUDA_ARCH__)
  if (in_step == 1 && out_step == 1) {
    softmax_exp_row(in, shift, out, n);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) out[i * out_step] = softmax_exp(in[i * in_step] - shift);
}

// y_i = x_i - max - log(sum_j exp(x_j - max)), the sum and the log in
// double; out must not overlap in. The exponentials go to out first, in a
// loop of their own (shifted_exp_row): one ::exp in double per element, a
// library call, was 8.7% of a d_model 256 step on 2 threads with its
// 7,000-word vocabulary (perf, docs/10).
ATTEND_HOST_DEVICE inline void log_softmax_row(const float* in, int64_t in_step, float* out,
                                               int64_t out_step, int64_t n) {
  const float m = row_max(in, in_step, n);
  shifted_exp_row(in, in_step, m, out, out_step, n);
  const double total = row_sum_in_four_parts<1>(out, n, 0.0, out_step);
  const float log_total = m + static_cast<float>(::log(total));
  for (int64_t i = 0; i < n; ++i) out[i * out_step] = in[i * in_step] - log_total;
}

// dx_i = g_i - exp(y_i) sum_j g_j: log_softmax's backward from its output y;
// y, g and dx step by `step`. (softmax's backward is exercise 3.1, written in
// src/ops/softmax.cpp for the CPU and in its kernel for the device.)
ATTEND_HOST_DEVICE inline void log_softmax_backward_row(const float* y, const float* g, float* dx,
                                                        int64_t step, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += g[i * step];
  const float s = static_cast<float>(total);
  for (int64_t i = 0; i < n; ++i) dx[i * step] = g[i * step] - expf(y[i * step]) * s;
}

// --- layer norm: one row of C values ----------------------------------------------------

// The row's mean and 1 / sqrt(var + eps), the biased variance (divided by
// C, as PyTorch uses), both sums in double.
ATTEND_HOST_DEVICE inline void layer_norm_row_statistics(const float* row, int64_t C, float eps,
                                                         double& mean, float& inverse_std) {
  mean = row_sum_in_four_parts<1>(row, C, 0.0) / static_cast<double>(C);
  const double variance = row_sum_in_four_parts<2>(row, C, mean) / static_cast<double>(C);
  inverse_std = static_cast<float>(1.0 / ::sqrt(variance + eps));
}

// x_hat = (x - mean) / std, then the output x_hat * weight + bias.
ATTEND_HOST_DEVICE inline float layer_norm_normalized(float x, double mean, float inverse_std) {
  return static_cast<float>((x - mean) * inverse_std);
}

// --- cross-entropy: one row of C log-probabilities ------------------------------------

// -(1 - e) log p_target - e mean_c log p_c, e the label smoothing; the mean in double.
ATTEND_HOST_DEVICE inline double cross_entropy_row_loss(const float* log_p, int64_t C, int64_t target,
                                                        double label_smoothing) {
  double mean_log_p = 0.0;
  for (int64_t c = 0; c < C; ++c) mean_log_p += log_p[c];
  mean_log_p /= static_cast<double>(C);
  return -(1.0 - label_smoothing) * log_p[target] - label_smoothing * mean_log_p;
}

// The mean of the rows' losses over the rows whose target is not
// ignore_index, added in row order in double; 0 when every row is ignored
// (nothing to learn from; PyTorch gives NaN). `counted` gets their number.
ATTEND_HOST_DEVICE inline float cross_entropy_mean(const double* row_loss, const int64_t* targets, int64_t rows,
                                                   int64_t ignore_index, int64_t& counted) {
  double total = 0.0;
  counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore_index) continue;
    total += row_loss[r];
    ++counted;
  }
  return counted > 0 ? static_cast<float>(total / counted) : 0.0f;
}

// --- the first maximum of a row of R contiguous values (max, argmax) -----------------

ATTEND_HOST_DEVICE inline int64_t first_max_position(const float* row, int64_t R) {
  int64_t best = 0;
  for (int64_t k = 1; k < R; ++k) {
    if (row[k] > row[best]) best = k;
  }
  return best;
}

// --- dropout ----------------------------------------------------------------------------

// Element i (row-major) of a dropout drawn from a generator at `state` is
// kept when uniform number i + 1 of its stream is >= p: a function of
// (state, i) alone, so a CUDA thread per element draws the mask of the CPU's
// loop (kernels::dropout_forward, src/kernels/dropout.cpp, chapter 10).
ATTEND_HOST_DEVICE inline bool dropout_keeps(uint64_t state, uint64_t i, float p) {
  return counter_uniform(state, i) >= p;
}
// x * scale where kept, else 0: the output from the input, and the gradient
// from the output's. (scale * kept rather than `kept ? scale : 0`, which the
// CPU compiler turns into a jump per element: this form runs 4 at a time.)
ATTEND_HOST_DEVICE inline float dropout_scaled(float x, uint8_t kept, float scale) {
  return x * (scale * static_cast<float>(kept));
}

}  // namespace attend::kernels
