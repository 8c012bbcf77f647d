// The optimizers' arithmetic, written once for both devices: SGD's and
// Adam's update of one element and the gradient norm's sum of squares over
// one range. The CPU loops of src/optim/optim.cpp (chapter 4,
// docs/04-modules-and-optimizers.md) call these functions; so do the CUDA
// kernels of src/kernels/optimizer.cu, declared at the end (chapter 11,
// docs/11-cuda.md, "Training on the device"). Same formula, same order:
// the same bits on the emulator (on a GPU nvcc may fuse a * b + c).
#pragma once

#include <math.h>  // sqrtf: the same function on the host and in CUDA device code

#include <cstdint>

#include "attend/error.hpp"  // (a learner's copy throws from the exercises below)
#include "attend/host_device.hpp"
#include "attend/row_kernels.hpp"  // row_sum_in_four_parts

namespace attend::kernels {

// --- SGD ----------------------------------------------------------------------------

struct SgdConstants {
  float lr, momentum, weight_decay;
  bool nesterov;
  bool first_step;  // PyTorch starts the momentum buffer at the first gradient rather than at 0
};

// One element: the weight w, its gradient g and its momentum buffer
// (nullptr without momentum):  d = g + weight_decay w;  with momentum m,
// buf = m buf + d (d itself at the first step), then d = buf (or d + m buf
// with Nesterov);  w -= lr d.
ATTEND_HOST_DEVICE inline void sgd_update_element(float& w, float g, float* momentum_buffer,
                                                  const SgdConstants& c) {
  // exercise 4.2 begin: SGD update of w with weight decay, momentum buffer and Nesterov
  float d = g + c.weight_decay * w;
  if (momentum_buffer) {
    float& buf = *momentum_buffer;
    buf = c.first_step ? d : c.momentum * buf + d;
    d = c.nesterov ? d + c.momentum * buf : buf;
  }
  w -= c.lr * d;
  // exercise 4.2 end
}

// --- Adam and AdamW -----------------------------------------------------------------------

// correction1 = 1 - beta1^t and correction2 = 1 - beta2^t at step t.
struct AdamConstants {
  float lr, beta1, beta2, eps, weight_decay, correction1, correction2;
};

// One element: weight w, Adam's running means m (of g) and v (of g^2),
// gradient g. AdamW (kDecoupled) decays the weight itself; Adam adds the L2
// penalty to the gradient.
template <bool kDecoupled>
ATTEND_HOST_DEVICE inline void adam_update_element(float& w, float& m, float& v, float g,
                                                   const AdamConstants& c) {
  // exercise 4.3 begin: Adam / AdamW update of one element: w, m, v from g and the constants c
  if constexpr (kDecoupled) {
    w -= c.lr * c.weight_decay * w;  // AdamW: decay the weight itself
  } else {
    g += c.weight_decay * w;         // Adam: L2 penalty in the gradient
  }
  m = c.beta1 * m + (1.0f - c.beta1) * g;
  v = c.beta2 * v + (1.0f - c.beta2) * g * g;
  const float m_hat = m / c.correction1;
  const float v_hat = v / c.correction2;
  w -= c.lr * m_hat / (sqrtf(v_hat) + c.eps);
  // exercise 4.3 end
}

// --- the gradient norm ------------------------------------------------------------------

// The optimizers cut every parameter into ranges of this many elements (the
// last one shorter). On the CPU the threads share the ranges; for the
// gradient norm each range's sum of squares is one number, on the GPU one
// thread's, and the range sums are added in range order: the ranges depend
// on the sizes alone, so the norm has the same bits on any thread count and
// on either device.
constexpr int64_t kOptimizerRangeSize = 1 << 14;

// g[begin]^2 + ... + g[end - 1]^2, in double, as four partial sums
// (row_sum_in_four_parts, row_kernels.hpp): one running sum waits ~4 cycles
// for each addition. Clipping's two loops were 5.4% of the samples of a
// d_model 256 step on one thread with one sum, 3.1% with four (perf, 60 steps).
ATTEND_HOST_DEVICE inline double sum_of_squares(const float* g, int64_t begin, int64_t end) {
  return row_sum_in_four_parts<2>(g + begin, end - begin, 0.0);
}

// What clipping multiplies every gradient by: max_norm / norm when the norm
// exceeds max_norm, else 1 (no change).
ATTEND_HOST_DEVICE inline float clip_scale(float norm, float max_norm) {
  return norm > max_norm && norm > 0.0f ? max_norm / norm : 1.0f;
}

// --- on the device (src/kernels/optimizer.cu) ------------------------------------------
// Every pointer is in device memory; one thread per element (per range for
// the sums), each running the function above. No atomics: the same bits on
// every run.

// w (n), g (n), momentum_buffer (n, or nullptr): w and the buffer in place.
void sgd_update_device(float* w, const float* g, float* momentum_buffer, int64_t n,
                       const SgdConstants& c);
// w, m, v, g (n each): w, m, v in place; decoupled: AdamW.
void adam_update_device(float* w, float* m, float* v, const float* g, int64_t n,
                        const AdamConstants& c, bool decoupled);
// range_sums[r] (ceil(n / kOptimizerRangeSize)) = sum_of_squares of range r of g (n).
void sum_of_squares_device(const float* g, int64_t n, double* range_sums);
// norm_and_scale (2) = {sqrt(range_sums[0] + ... + range_sums[ranges - 1]),
// clip_scale of it}: one thread, adding in order.
void clip_coefficients_device(const double* range_sums, int64_t ranges, float max_norm,
                              float* norm_and_scale);
// g (n) *= *scale, the scale read on the device (no copy to the host, no
// wait); nothing changes when it is 1.
void scale_by_device(float* g, int64_t n, const float* scale);

}  // namespace attend::kernels
