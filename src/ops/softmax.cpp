// softmax and log_softmax along one dim, computed stably.
// Chapter 3 (docs/03-operations.md).
//
// exp(1000) overflows a float, but softmax(x) = softmax(x - m) for any m, so
// we subtract each row's maximum first: the largest exponent is then e^0 = 1.
#include <cmath>
#include <limits>

#include "attend/ops.hpp"
#include "op_helpers.hpp"

namespace attend {

namespace {

// Runs row_fn(in, in_step, out, n) on every "row" along `dim`: the n elements
// x[..., i, ...] for i = 0..n-1 at `dim`, read with stride in_step. The output
// is a new contiguous tensor of x's shape.
template <class RowFn>
Tensor along_rows(const Tensor& x, int64_t dim, RowFn row_fn) {
  Tensor out = empty(x.shape());  // row_fn writes every element of every row
  Shape row_starts_shape = x.shape();
  row_starts_shape[dim] = 1;
  std::vector<std::array<int64_t, 2>> starts;  // (input offset, output offset) of each row
  for_each_offset<2>(row_starts_shape, {&x.strides(), &out.strides()}, {x.offset(), 0},
                     [&](const std::array<int64_t, 2>& o) { starts.push_back(o); });
  const float* in = detail::storage_floats(x);
  float* o = out.data();
  const int64_t n = x.shape()[dim];
  const int64_t in_step = x.strides()[dim], out_step = out.strides()[dim];
  const int64_t rows = static_cast<int64_t>(starts.size());
#pragma omp parallel for if (rows * n >= detail::kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    row_fn(in + starts[r][0], in_step, o + starts[r][1], out_step, n);
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  detail::require_float(x, "softmax");
  const int64_t d = normalize_dim(dim, x.shape(), "softmax");
  Tensor out = along_rows(x, d, [](const float* in, int64_t is, float* o, int64_t os, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, in[i * is]);
    if (m == -std::numeric_limits<float>::infinity()) {
      // Every entry is -inf (e.g. a fully masked attention row): there is no
      // distribution to take, and we return zeros rather than 0/0 = NaN.
      for (int64_t i = 0; i < n; ++i) o[i * os] = 0.0f;
      return;
    }
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      o[i * os] = std::exp(in[i * is] - m);
      total += o[i * os];
    }
    const float inv = static_cast<float>(1.0 / total);
    for (int64_t i = 0; i < n; ++i) o[i * os] *= inv;
  });
  // With y = softmax(x): dL/dx_i = y_i (g_i - sum_j g_j y_j)
  record_op("softmax", out, {x}, [y = out.detach(), d](const Tensor& g) {
    return std::vector<Tensor>{y * (g - sum(g * y, {d}, true))};
  });
  return out;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  detail::require_float(x, "log_softmax");
  const int64_t d = normalize_dim(dim, x.shape(), "log_softmax");
  // log softmax(x)_i = x_i - m - log(sum_j exp(x_j - m)), with m the row max
  Tensor out = along_rows(x, d, [](const float* in, int64_t is, float* o, int64_t os, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, in[i * is]);
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += std::exp(static_cast<double>(in[i * is]) - m);
    const float log_total = m + static_cast<float>(std::log(total));
    for (int64_t i = 0; i < n; ++i) o[i * os] = in[i * is] - log_total;
  });
  // With y = log_softmax(x): dL/dx_i = g_i - exp(y_i) sum_j g_j
  record_op("log_softmax", out, {x}, [y = out.detach(), d](const Tensor& g) {
    return std::vector<Tensor>{g - exp(y) * sum(g, {d}, true)};
  });
  return out;
}

}  // namespace attend
