// matmul: (..., M, K) @ (..., K, N) -> (..., M, N), batch dims broadcast.
// Chapter 3 (docs/03-operations.md); the loops are in src/kernels/matmul.cpp,
// made fast in chapter 10 (docs/10-speed.md), which also adds `linear`, the
// product and the bias of a Linear layer as one op. On the device (chapter
// 11, docs/11-cuda.md) the product is sgemm_4_register_tiles
// (src/kernels/matmul.cu), which has matmul_strided's contract.
#include <vector>

#include "attend/gpu_kernels.hpp"
#include "attend/kernels.hpp"
#include "attend/ops.hpp"
#include "op_helpers.hpp"

namespace attend {

namespace {

// matmul_strided's call with every pointer in device memory: the offsets of
// the batch's matrices are copied to the device first (one copy of both lists).
void matmul_on_device(const Tensor& a, const Tensor& b, Tensor& out,
                      const std::vector<int64_t>& a_offsets, const std::vector<int64_t>& b_offsets,
                      int64_t M, int64_t K, int64_t N) {
  const int64_t batch = static_cast<int64_t>(a_offsets.size());
  std::vector<int64_t> offsets = a_offsets;
  offsets.insert(offsets.end(), b_offsets.begin(), b_offsets.end());
  const kernels::DeviceBlock device_offsets(offsets.size() * sizeof(int64_t));
  kernels::copy_to_device(device_offsets.get(), offsets.data(), offsets.size() * sizeof(int64_t));
  const auto* a_start = static_cast<const int64_t*>(device_offsets.get());
  const int64_t a_rank = a.dim(), b_rank = b.dim();
  kernels::sgemm_4_register_tiles(
      {a.device_data(), a_start, a.strides()[a_rank - 2], a.strides()[a_rank - 1]},
      {b.device_data(), a_start + batch, b.strides()[b_rank - 2], b.strides()[b_rank - 1]},
      out.device_data(), batch, M, K, N);
}

// a @ b, as matmul computes it, without recording it in the graph. On the
// CPU, `bias` (a contiguous (N) tensor) is added to every row by the kernel,
// while each thread's part of the product is in its cache (linear below).
Tensor product(const Tensor& a, const Tensor& b, const Tensor& bias_on_cpu) {
  detail::require_float(a, "matmul", "first input", detail::Runs::on_any_device);
  detail::require_float(b, "matmul", "second input", detail::Runs::on_any_device);
  detail::require_same_device(a, b, "matmul");
  if (a.dim() < 2 || b.dim() < 2) {
    throw Error("matmul: both inputs need at least 2 dims, got shapes " + to_string(a.shape()) +
                " and " + to_string(b.shape()));
  }
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (b.size(-2) != K) {
    throw Error("matmul: shapes " + to_string(a.shape()) + " and " + to_string(b.shape()) +
                " are not compatible (" + std::to_string(K) + " columns in the first, " +
                std::to_string(b.size(-2)) + " rows in the second)");
  }
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  const Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");

  // No copies: the kernel reads each matrix through its row and column
  // strides (a transposed view just swaps them), and finds matrix i of the
  // batch at an offset from data(); a broadcast batch dim has stride 0, so
  // it repeats an offset.
  const Shape a_batch_strides = broadcast_strides(
      a_batch, Shape(a.strides().begin(), a.strides().end() - 2), batch, "matmul");
  const Shape b_batch_strides = broadcast_strides(
      b_batch, Shape(b.strides().begin(), b.strides().end() - 2), batch, "matmul");
  std::vector<int64_t> a_offsets, b_offsets;  // where each batch's matrices start
  for_each_offset<2>(batch, {&a_batch_strides, &b_batch_strides}, {0, 0},
                     [&](const std::array<int64_t, 2>& o) {
                       a_offsets.push_back(o[0]);
                       b_offsets.push_back(o[1]);
                     });

  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty(out_shape, a.device());  // the kernel writes every element (zeros when K = 0)
  if (a.device() == Device::cuda) {
    matmul_on_device(a, b, out, a_offsets, b_offsets, M, K, N);
  } else {
    const int64_t a_rank = a.dim(), b_rank = b.dim();
    kernels::matmul_strided(
        {a.data(), a_offsets.data(), a.strides()[a_rank - 2], a.strides()[a_rank - 1]},
        {b.data(), b_offsets.data(), b.strides()[b_rank - 2], b.strides()[b_rank - 1]}, out.data(),
        static_cast<int64_t>(a_offsets.size()), M, K, N, bias_on_cpu.defined() ? bias_on_cpu.data() : nullptr);
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = product(a, b, Tensor());
  // C = A B  =>  dA = dC B^T,  dB = A^T dC  (summed over broadcast batch dims by the engine).
  // The transposes are views, read by the kernel without copying.
  record_op("matmul", out, {a, b}, [a, b](const Tensor& g) -> std::vector<Tensor> {
    // exercise 3.4 begin: matmul backward: dA = g B^T, dB = A^T g
    const int64_t K = a.size(-1), N = b.size(-1);
    Tensor db;
    if (b.dim() == 2 && a.dim() > 2 && a.numel() > 0) {
      // One b shared by every matrix of a batched a, e.g. (B, T, D) @ (D, V):
      // dB = sum over the batch of A_i^T dC_i, which is one product
      // (K, batch * M) @ (batch * M, N) instead of `batch` thin products of
      // inner size M whose (batch, K, N) result the engine would then sum.
      db = matmul(a.reshape({-1, K}).t(), g.reshape({-1, N}));
    } else {
      db = matmul(a.transpose(-1, -2), g);
    }
    return std::vector<Tensor>{matmul(g, b.transpose(-1, -2)), db};
    // exercise 3.4 end
  });
  return out;
}

// x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out)
// y = x weight^T + bias, what matmul(x, weight.t()) + bias computes (the same
// bits), as one op. Why: written as two ops, the graph keeps both the
// product and the sum alive until the backward pass (the product only as an
// edge of the graph: no backward needs it), and the bias is a second pass
// over the output. Here one (N, out) tensor is kept per layer instead of
// two (a sixth of a training step's memory), and on the CPU the matmul
// kernel adds the bias to each thread's part of the product as soon as it
// is computed (no second loop over the output, which on 2 threads would
// partly read what the other core wrote).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::require_float(x, "linear", "input", detail::Runs::on_any_device);
  detail::require_float(weight, "linear", "weight", detail::Runs::on_any_device);
  detail::require_same_device(x, weight, "linear", "input", "weight");
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1)) {
    throw Error("linear: input of shape " + to_string(x.shape()) + " and weight of shape " +
                to_string(weight.shape()) + " do not match: the input must end in " +
                (weight.dim() == 2 ? std::to_string(weight.size(1)) : std::string("in_features")) +
                " and the weight be (out_features, in_features)");
  }
  const int64_t in = weight.size(1), out_features = weight.size(0);
  if (bias.defined() && (bias.dtype() != DType::Float32 || bias.shape() != Shape{out_features})) {
    throw Error("linear: bias of shape " + to_string(bias.shape()) + " does not match weight " +
                to_string(weight.shape()) + "; expected (" + std::to_string(out_features) + ",)");
  }
  if (bias.defined()) detail::require_same_device(x, bias, "linear", "input", "bias");
  // (N, in) @ (in, out): the leading dims of x folded into N rows, the
  // weight read transposed through its strides. detach(): the product and
  // the reshapes are this op's own business, not separate graph nodes.
  const Tensor x2d = x.detach().reshape({-1, in});
  const Tensor w = weight.detach();
  const bool bias_on_cpu = bias.defined() && bias.device() == Device::cpu;
  // (N, out), contiguous; on the CPU with the bias added by the kernel.
  Tensor y2d = product(x2d, w.t(), bias_on_cpu ? bias.contiguous() : Tensor());
  if (bias.defined() && bias.device() == Device::cuda) {
    // In place: y2d[r][o] += bias[o], bias read with a row stride of 0.
    kernels::binary_device(kernels::BinaryOp::add, 0.0f, y2d.device_data(),
                           device_strides(y2d.strides()), bias.device_data(),
                           device_strides({0, bias.strides()[0]}), y2d.device_data(),
                           device_shape(y2d.shape(), "linear"));
  }
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor y = y2d.reshape(out_shape);
  // dx = g weight,  dweight = g^T x (summed over all N rows),  dbias = sum over rows of g
  record_op("linear", y, {x, weight, bias},
            [x2d, w, has_bias = bias.defined(), x_shape = x.shape()](const Tensor& g) {
              const Tensor g2d = g.reshape({-1, w.size(0)});
              return std::vector<Tensor>{matmul(g2d, w).reshape(x_shape), matmul(g2d.t(), x2d),
                                         has_bias ? sum_to_shape(g2d, {w.size(0)}) : Tensor()};
            });
  return y;
}

}  // namespace attend
