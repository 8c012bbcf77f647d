// The network building blocks that are ops of their own, with hand-derived
// backward passes: layer_norm, dropout, cross_entropy.
// Chapter 3 (docs/03-operations.md).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "attend/ops.hpp"
#include "attend/row_kernels.hpp"
#include "attend/softmax_exp.hpp"
#include "op_helpers.hpp"

namespace attend {

using Grads = std::vector<Tensor>;

// x: (..., C), weight, bias: (C) or undefined -> (..., C)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  detail::require_float(x, "layer_norm", "input", detail::Runs::on_any_device);
  if (x.dim() == 0) throw Error("layer_norm: input must have at least 1 dim");
  const int64_t C = x.size(-1);
  for (const Tensor* p : {&weight, &bias}) {
    const char* what = p == &weight ? "weight" : "bias";
    if (p->defined() && (p->dtype() != DType::Float32 || p->shape() != Shape{C})) {
      throw Error("layer_norm: " + std::string(what) + " of shape " + to_string(p->shape()) +
                  " does not match the last dim of input " + to_string(x.shape()) + "; expected (" +
                  std::to_string(C) + ",)");
    }
    if (p->defined()) detail::require_same_device(x, *p, "layer_norm", "input", what);
  }
  const Device device = x.device();
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  const Tensor xc = x.contiguous();
  const Tensor w = weight.defined() ? weight.contiguous() : ones({C}, device);
  const Tensor b = bias.defined() ? bias.contiguous() : zeros({C}, device);
  // All three are written in full below.
  Tensor out = empty(x.shape(), device);
  Tensor normalized = empty(x.shape(), device);  // x_hat, saved for backward
  Tensor inv_std = empty({rows}, device);        // 1 / sqrt(var + eps) per row, saved
  if (device == Device::cuda) {  // one thread per row (src/kernels/nn_functional.cu)
    kernels::layer_norm_device(xc.device_data(), w.device_data(), b.device_data(), rows, C, eps,
                               out.device_data(), normalized.device_data(), inv_std.device_data());
  } else {
    const float* in = xc.data();
    float* o = out.data();
    float* xh = normalized.data();
    float* rs = inv_std.data();
    const float* wp = w.data();
    const float* bp = b.data();
    parallel_for(rows, rows * C >= detail::kParallelThreshold, [&](int64_t r) {
      const float* row = in + r * C;
      double mean = 0.0;
      float inv_std_row = 0.0f;
      kernels::layer_norm_row_statistics(row, C, eps, mean, inv_std_row);
      rs[r] = inv_std_row;
      float* xh_row = xh + r * C;
      float* o_row = o + r * C;
#pragma omp simd  // the arrays do not overlap: several elements at once
      for (int64_t c = 0; c < C; ++c) {
        xh_row[c] = kernels::layer_norm_normalized(row[c], mean, inv_std_row);
        o_row[c] = xh_row[c] * wp[c] + bp[c];
      }
    });
  }
  // With x_hat = (x - mean) * s (s = 1/std) and h = g * weight, per row:
  //   dx = s * (h - mean(h) - x_hat * mean(h * x_hat))
  //   dweight = sum over rows of g * x_hat,  dbias = sum over rows of g
  record_op("layer_norm", out, {x, weight, bias}, [normalized, inv_std, w, rows, C](const Tensor& g) -> Grads {
    if (normalized.device() == Device::cuda) {
      const Tensor gc = g.contiguous();
      Tensor dx = empty(normalized.shape(), Device::cuda), dweight = empty({C}, Device::cuda),
             dbias = empty({C}, Device::cuda);  // written in full by the kernels
      kernels::layer_norm_backward_device(gc.device_data(), normalized.device_data(), inv_std.device_data(),
                                          w.device_data(), rows, C, dx.device_data(), dweight.device_data(),
                                          dbias.device_data());
      return Grads{dx, dweight, dbias};
    }
    // exercise 3.2 begin: layer norm backward: dx, dweight, dbias from g, x_hat and 1/std
    const Tensor gc = g.contiguous();
    const float* gp = gc.data();
    const float* xh = normalized.data();
    const float* rs = inv_std.data();
    const float* wp = w.data();
    Tensor dx = empty(normalized.shape());  // written in full below
    float* dxp = dx.data();
    parallel_for(rows, rows * C >= detail::kParallelThreshold, [&](int64_t r) {
      double mean_h = 0.0, mean_hx = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        const double h = static_cast<double>(gp[r * C + c]) * wp[c];
        mean_h += h;
        mean_hx += h * xh[r * C + c];
      }
      mean_h /= static_cast<double>(C);
      mean_hx /= static_cast<double>(C);
      for (int64_t c = 0; c < C; ++c) {
        const double h = static_cast<double>(gp[r * C + c]) * wp[c];
        dxp[r * C + c] = static_cast<float>(rs[r] * (h - mean_h - xh[r * C + c] * mean_hx));
      }
    });
    Tensor dweight = zeros({C}), dbias = zeros({C});
    float* dw = dweight.data();
    float* db = dbias.data();
    // Sums down the columns. The threads share strips of columns, not the
    // rows (splitting the rows would need partial sums added in an order
    // that depends on the thread count).
    const int64_t strips = (C + detail::kColumnsPerTask - 1) / detail::kColumnsPerTask;
    parallel_for(strips, rows * C >= detail::kParallelThreshold, [&](int64_t strip) {
      const int64_t c0 = strip * detail::kColumnsPerTask;
      const int64_t width = std::min(C, c0 + detail::kColumnsPerTask) - c0;
      // The strip's sums in local arrays (vector registers), as sum_to_shape does.
      float dw_strip[detail::kColumnsPerTask] = {}, db_strip[detail::kColumnsPerTask] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const float* g_row = gp + r * C + c0;
        const float* xh_row = xh + r * C + c0;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          dw_strip[c] += g_row[c] * xh_row[c];
          db_strip[c] += g_row[c];
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        dw[c0 + c] = dw_strip[c];
        db[c0 + c] = db_strip[c];
      }
    });
    return Grads{dx, dweight, dbias};
    // exercise 3.2 end
  });
  return out;
}

Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  detail::require_float(x, "dropout", "input", detail::Runs::on_any_device);
  if (!(p >= 0.0f && p <= 1.0f)) {
    throw Error("dropout: probability must be in [0, 1], got " + std::to_string(p));
  }
  if (!training || p == 0.0f) return x;
  // Keep each element with probability 1-p and scale it by 1/(1-p): element
  // i is kept when the i-th number of gen's stream from here is >= p. The
  // numbers are drawn counter-based (Generator::uniform_at), so any thread
  // can compute any element's: the mask is the same on any thread count (and
  // the same as one thread calling gen.uniform() per element), and a CUDA
  // thread per element draws the same mask on the device
  // (kernels::dropout_keeps). The backward needs only which elements were
  // kept: one byte each, a quarter of a float mask.
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const int64_t n = x.numel();
  const Generator stream = gen;  // the stream at this call's first number
  gen.skip(static_cast<uint64_t>(n));
  // out[i] = x[i] * scale where kept, else 0, over x in row-major order
  const Tensor xc = x.contiguous();
  Tensor out = empty(x.shape(), x.device());  // written in full below
  if (x.device() == Device::cuda) {
    // The mask stays on the device, in a block of the caching allocator.
    auto kept = std::make_shared<kernels::DeviceBlock>(static_cast<size_t>(n));
    kernels::dropout_device(xc.device_data(), n, stream.state(), p, scale, static_cast<uint8_t*>(kept->get()),
                            out.device_data());
    record_op("dropout", out, {x}, [kept, scale, n, shape = x.shape()](const Tensor& g) {
      const Tensor gc = g.contiguous();
      Tensor dx = empty(shape, Device::cuda);  // written in full by the kernel
      kernels::dropout_backward_device(gc.device_data(), static_cast<const uint8_t*>(kept->get()), n, scale,
                                       dx.device_data());
      return Grads{dx};
    });
    return out;
  }
  // The mask's bytes are all written below: allocated without the zeros a
  // std::vector would write first (on the step's thread alone).
  std::shared_ptr<uint8_t[]> kept = std::make_shared_for_overwrite<uint8_t[]>(static_cast<size_t>(n));
  uint8_t* k = kept.get();
  const float* in = xc.data();
  float* o = out.data();
  parallel_for_ranges(n, n >= detail::kParallelThreshold ? thread_count() : 1, [&](int64_t begin, int64_t end) {
    kernels::dropout_forward(stream.state(), p, scale, in, o, k, begin, end);  // the loop, chapter 10
  });
  // d(x * mask)/dx = mask
  record_op("dropout", out, {x}, [kept, scale, n, shape = x.shape()](const Tensor& g) {
    const Tensor gc = g.contiguous();
    const float* gp = gc.data();
    const uint8_t* k = kept.get();
    Tensor dx = empty(shape);  // written in full below
    float* d = dx.data();
    parallel_for_simd(n, n >= detail::kParallelThreshold,
                      [&](int64_t i) { d[i] = kernels::dropout_scaled(gp[i], k[i], scale); });
    return Grads{dx};
  });
  return out;
}

namespace {

// The message of an out-of-range target, on either device.
Error target_out_of_range(int64_t target, int64_t C, const Shape& logits_shape) {
  return Error("cross_entropy: target " + std::to_string(target) + " is out of range [0, " + std::to_string(C) +
               ") for logits of shape " + to_string(logits_shape));
}

// cross_entropy's device side (src/kernels/nn_functional.cu): the same
// arithmetic as the CPU's below, one thread per row and then one thread for
// the mean; the count of rows that are not ignored stays on the device for
// the backward. The targets are checked there too: the one value that comes
// back to the host is the first bad target, if any.
Tensor cross_entropy_on_device(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                               float label_smoothing) {
  const int64_t C = logits.size(-1);
  const Tensor target = targets.contiguous();
  const int64_t rows = target.numel();
  int64_t bad_target = 0;
  if (kernels::find_index_out_of_range_device(target.device_index_data(), rows, C, /*has_allowed=*/true,
                                              ignore_index, &bad_target) >= 0) {
    throw target_out_of_range(bad_target, C, logits.shape());
  }
  const Tensor log_probs = log_softmax(logits.detach(), -1).contiguous();  // on the device
  const double eps = label_smoothing;
  const kernels::DeviceBlock row_loss(static_cast<size_t>(rows) * sizeof(double));
  Tensor out = empty({}, Device::cuda);
  Tensor counted = empty({}, DType::Int64, Device::cuda);  // rows not ignored, for the backward
  kernels::cross_entropy_device(log_probs.device_data(), target.device_index_data(), rows, C, ignore_index, eps,
                                static_cast<double*>(row_loss.get()), out.device_data(),
                                counted.device_index_data());
  record_op("cross_entropy", out, {logits},
            [log_probs, target, counted, ignore_index, eps, rows, C, shape = logits.shape()](const Tensor& g) -> Grads {
              Tensor grad = empty(shape, Device::cuda);  // written in full by the kernel
              kernels::cross_entropy_backward_device(log_probs.device_data(), target.device_index_data(), rows, C,
                                                     ignore_index, eps, counted.device_index_data(),
                                                     g.device_data(), grad.device_data());
              return Grads{grad};
            });
  return out;
}

}  // namespace

// logits: (..., C), targets: (...) -> a 0-d tensor
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     float label_smoothing) {
  detail::require_float(logits, "cross_entropy", "logits", detail::Runs::on_any_device);
  detail::require_index(targets, "cross_entropy", "targets");
  if (logits.dim() < 1 ||
      targets.shape() != Shape(logits.shape().begin(), logits.shape().end() - 1)) {
    throw Error("cross_entropy: logits " + to_string(logits.shape()) + " and targets " +
                to_string(targets.shape()) +
                " do not match: targets must have the logits' shape without the last (class) dim");
  }
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) {
    throw Error("cross_entropy: label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  }
  detail::require_same_device(logits, targets, "cross_entropy", "logits", "targets");
  if (logits.device() == Device::cuda) return cross_entropy_on_device(logits, targets, ignore_index, label_smoothing);
  const int64_t C = logits.size(-1);
  const std::vector<int64_t> target = targets.to_index_vector();
  for (int64_t t : target) {
    if (t != ignore_index && (t < 0 || t >= C)) throw target_out_of_range(t, C, logits.shape());
  }
  const int64_t rows = static_cast<int64_t>(target.size());
  // log p = log_softmax(logits); keep p = softmax for the backward.
  const Tensor log_probs = log_softmax(logits.detach(), -1).contiguous();
  const float* lp = log_probs.data();
  const double eps = label_smoothing;
  // Each row's loss on its own (rows shared among threads), then their sum
  // in row order on one thread: the same bits on any thread count.
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  parallel_for(rows, rows * C >= detail::kParallelThreshold, [&](int64_t r) {
    if (target[r] == ignore_index) return;
    // loss = -(1-e) log p_target - e * mean_c log p_c
    row_loss[r] = kernels::cross_entropy_row_loss(lp + r * C, C, target[r], eps);
  });
  int64_t counted = 0;
  Tensor out = scalar_tensor(kernels::cross_entropy_mean(row_loss.data(), target.data(), rows, ignore_index, counted));
  // dloss/dlogits = (softmax(logits) - q) / counted, q = (1-e) one_hot + e/C;
  // rows with an ignored target get 0.
  record_op("cross_entropy", out, {logits},
            [log_probs, target, ignore_index, eps, counted, C, shape = logits.shape()](const Tensor& g) -> Grads {
              // exercise 3.3 begin: cross-entropy backward: (softmax - q) / counted, q = (1-e) one_hot + e/C
              Tensor grad = empty(shape);  // every row is written below
              float* gp = grad.data();
              const float* lp = log_probs.data();
              const double scale = counted > 0 ? g.item() / static_cast<double>(counted) : 0.0;
              const int64_t rows = static_cast<int64_t>(target.size());
              // q is e/C off the target and 1 - e + e/C on it.
              const float q_off = static_cast<float>(eps / static_cast<double>(C));
              const float q_on = static_cast<float>(1.0 - eps + eps / static_cast<double>(C));
              const float s = static_cast<float>(scale);
              parallel_for(rows, rows * C >= detail::kParallelThreshold, [&](int64_t r) {
                float* row = gp + r * C;
                if (target[r] == ignore_index) {
                  std::fill(row, row + C, 0.0f);
                  return;
                }
                // softmax = exp(log p) by softmax_exp, which the compiler
                // vectorizes (a call of std::exp per element was 3.6% of a
                // d_model 256 step with its 4,769 words); the device kernel
                // (src/kernels/nn_functional.cu) computes the same bits.
                const float* lp_row = lp + r * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) row[c] = (kernels::softmax_exp(lp_row[c]) - q_off) * s;
                row[target[r]] = (kernels::softmax_exp(lp_row[target[r]]) - q_on) * s;
              });
              return Grads{grad};
              // exercise 3.3 end
            });
  return out;
}

}  // namespace attend
