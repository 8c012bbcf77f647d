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
  parallel_for(rows, rows * n >= detail::kParallelThreshold, [&](int64_t r) {
    row_fn(in + starts[r][0], in_step, o + starts[r][1], out_step, n);
  });
  return out;
}

// The backward passes, one row at a time: y (the saved output) and g are
// contiguous of one shape, so row (outer o, inner i) along dim d starts at
// o * n * inner + i and steps by inner. row_fn(y, g, dx, step, n) writes one
// row of dx. Written as ops (sum, mul, sub) the backward took five passes
// over memory and four temporary tensors; here it is one parallel pass.
template <class RowFn>
Tensor backward_along_rows(const Tensor& y, const Tensor& g, int64_t dim, RowFn row_fn) {
  const Tensor gc = g.contiguous();
  Tensor dx = empty(y.shape());  // row_fn writes every element of every row
  const Shape& shape = y.shape();
  const int64_t n = shape[dim];
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < dim; ++k) outer *= shape[k];
  for (int64_t k = dim + 1; k < static_cast<int64_t>(shape.size()); ++k) inner *= shape[k];
  const float* yp = y.data();
  const float* gp = gc.data();
  float* dp = dx.data();
  parallel_for(outer * inner, outer * inner * n >= detail::kParallelThreshold, [&](int64_t r) {
    const int64_t start = (r / inner) * n * inner + r % inner;
    row_fn(yp + start, gp + start, dp + start, inner, n);
  });
  return dx;
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
  // (the sum in double, as sum() does, so the bits are those of
  // y * (g - sum(g * y, {d}, true)) written with ops).
  record_op("softmax", out, {x}, [y = out.detach(), d](const Tensor& g) -> std::vector<Tensor> {
    // exercise 3.1 begin: softmax backward: dx_i = y_i (g_i - sum_j g_j y_j) along dim d
    return std::vector<Tensor>{backward_along_rows(
        y, g, d, [](const float* yr, const float* gr, float* dx, int64_t step, int64_t n) {
          double dot = 0.0;
          for (int64_t i = 0; i < n; ++i) dot += gr[i * step] * yr[i * step];
          const float s = static_cast<float>(dot);
          for (int64_t i = 0; i < n; ++i) dx[i * step] = yr[i * step] * (gr[i * step] - s);
        })};
    // exercise 3.1 end
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
    return std::vector<Tensor>{backward_along_rows(
        y, g, d, [](const float* yr, const float* gr, float* dx, int64_t step, int64_t n) {
          double total = 0.0;
          for (int64_t i = 0; i < n; ++i) total += gr[i * step];
          const float s = static_cast<float>(total);
          for (int64_t i = 0; i < n; ++i) dx[i * step] = gr[i * step] - std::exp(yr[i * step]) * s;
        })};
  });
  return out;
}

}  // namespace attend
