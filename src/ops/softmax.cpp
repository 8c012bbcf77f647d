// softmax and log_softmax along one dim, computed stably.
// Chapter 3 (docs/03-operations.md).
//
// exp(1000) overflows a float, but softmax(x) = softmax(x - m) for any m, so
// we subtract each row's maximum first: the largest exponent is then e^0 = 1.
#include <array>
#include <vector>

#include "attend/ops.hpp"
#include "attend/row_kernels.hpp"
#include "op_helpers.hpp"

namespace attend {

namespace {

// Runs row_fn(in, in_step, out, out_step, n) on every "row" along `dim`:
// the n elements x[..., i, ...] for i = 0..n-1 at `dim`, read with stride
// in_step. The output is a new contiguous tensor of x's shape. On the device
// a kernel runs `device_kind`'s row function, one thread per row (chapter 11).
template <class RowFn>
Tensor along_rows(const Tensor& x, int64_t dim, kernels::RowSoftmax device_kind, RowFn row_fn) {
  Tensor out = empty(x.shape(), x.device());  // row_fn writes every element of every row
  Shape row_starts_shape = x.shape();
  row_starts_shape[dim] = 1;
  const int64_t n = x.shape()[dim];
  const int64_t in_step = x.strides()[dim], out_step = out.strides()[dim];
  if (x.device() == Device::cuda) {
    kernels::softmax_along_dim_device(device_kind, x.device_data(), device_shape(row_starts_shape, "softmax"),
                                      device_strides(x.strides()), in_step, out.device_data(),
                                      device_strides(out.strides()), out_step, n);
    return out;
  }
  std::vector<std::array<int64_t, 2>> starts;  // (input offset, output offset) of each row
  for_each_offset<2>(row_starts_shape, {&x.strides(), &out.strides()}, {x.offset(), 0},
                     [&](const std::array<int64_t, 2>& o) { starts.push_back(o); });
  const float* in = detail::storage_floats(x);
  float* o = out.data();
  const int64_t rows = static_cast<int64_t>(starts.size());
  parallel_for(rows, rows * n >= detail::kParallelThreshold, [&](int64_t r) {
    row_fn(in + starts[r][0], in_step, o + starts[r][1], out_step, n);
  });
  return out;
}

// A contiguous tensor seen as rows along `dim`: (outer, n, inner) with the
// dim in the middle, so row (o, i) starts at o * n * inner + i and steps by inner.
struct RowLayout {
  int64_t outer = 1, n = 0, inner = 1;
};
RowLayout rows_along(const Shape& shape, int64_t dim) {
  RowLayout layout;
  layout.n = shape[dim];
  for (int64_t k = 0; k < dim; ++k) layout.outer *= shape[k];
  for (int64_t k = dim + 1; k < static_cast<int64_t>(shape.size()); ++k) layout.inner *= shape[k];
  return layout;
}

// The backward passes, one row at a time: y (the saved output) and g are
// contiguous of one shape; row_fn(y, g, dx, step, n) writes one row of dx.
// Written as ops (sum, mul, sub) the backward took five passes over memory
// and four temporary tensors; here it is one parallel pass.
template <class RowFn>
Tensor backward_along_rows(const Tensor& y, const Tensor& g, int64_t dim, RowFn row_fn) {
  const Tensor gc = g.contiguous();
  Tensor dx = empty(y.shape());  // row_fn writes every element of every row
  const auto [outer, n, inner] = rows_along(y.shape(), dim);
  const float* yp = y.data();
  const float* gp = gc.data();
  float* dp = dx.data();
  parallel_for(outer * inner, outer * inner * n >= detail::kParallelThreshold, [&](int64_t r) {
    const int64_t start = (r / inner) * n * inner + r % inner;
    row_fn(yp + start, gp + start, dp + start, inner, n);
  });
  return dx;
}

// The same on the device: one thread per row (src/kernels/softmax_along_dim.cu).
Tensor backward_along_rows_on_device(const Tensor& y, const Tensor& g, int64_t dim, kernels::RowSoftmax kind) {
  const Tensor gc = g.contiguous();
  Tensor dx = empty(y.shape(), Device::cuda);  // the kernel writes every row
  const RowLayout rows = rows_along(y.shape(), dim);
  kernels::softmax_backward_along_dim_device(kind, y.device_data(), gc.device_data(), dx.device_data(), rows.outer,
                                             rows.n, rows.inner);
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  detail::require_float(x, "softmax", "input", detail::Runs::on_any_device);
  const int64_t d = normalize_dim(dim, x.shape(), "softmax");
  // kernels::softmax_row (attend/row_kernels.hpp): exp(x - max) / sum, a
  // fully masked row (all -inf) gives zeros rather than 0/0 = NaN.
  Tensor out = along_rows(x, d, kernels::RowSoftmax::softmax, kernels::softmax_row);
  // With y = softmax(x): dL/dx_i = y_i (g_i - sum_j g_j y_j)
  // (the sum in double, as sum() does, so the bits are those of
  // y * (g - sum(g * y, {d}, true)) written with ops).
  record_op("softmax", out, {x}, [y = out.detach(), d](const Tensor& g) -> std::vector<Tensor> {
    if (y.device() == Device::cuda) return {backward_along_rows_on_device(y, g, d, kernels::RowSoftmax::softmax)};
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
  detail::require_float(x, "log_softmax", "input", detail::Runs::on_any_device);
  const int64_t d = normalize_dim(dim, x.shape(), "log_softmax");
  // log softmax(x)_i = x_i - m - log(sum_j exp(x_j - m)), with m the row max
  // (kernels::log_softmax_row)
  Tensor out = along_rows(x, d, kernels::RowSoftmax::log_softmax, kernels::log_softmax_row);
  // With y = log_softmax(x): dL/dx_i = g_i - exp(y_i) sum_j g_j
  record_op("log_softmax", out, {x}, [y = out.detach(), d](const Tensor& g) {
    if (y.device() == Device::cuda) {
      return std::vector<Tensor>{backward_along_rows_on_device(y, g, d, kernels::RowSoftmax::log_softmax)};
    }
    return std::vector<Tensor>{backward_along_rows(y, g, d, kernels::log_softmax_backward_row)};
  });
  return out;
}

}  // namespace attend
