// matmul: (..., M, K) @ (..., K, N) -> (..., M, N), batch dims broadcast.
// Chapter 3 (docs/03-operations.md); the loops are in src/kernels/matmul.cpp,
// made fast in chapter 10 (docs/10-speed.md).
#include <vector>

#include "attend/kernels.hpp"
#include "attend/ops.hpp"
#include "op_helpers.hpp"

namespace attend {

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::require_float(a, "matmul", "first input");
  detail::require_float(b, "matmul", "second input");
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
  Tensor out = empty(out_shape);  // the kernel writes every element (zeros when K = 0)
  const int64_t a_rank = a.dim(), b_rank = b.dim();
  kernels::matmul_strided(
      {a.data(), a_offsets.data(), a.strides()[a_rank - 2], a.strides()[a_rank - 1]},
      {b.data(), b_offsets.data(), b.strides()[b_rank - 2], b.strides()[b_rank - 1]}, out.data(),
      static_cast<int64_t>(a_offsets.size()), M, K, N);

  // C = A B  =>  dA = dC B^T,  dB = A^T dC  (summed over broadcast batch dims by the engine).
  // The transposes are views, read by the kernel without copying.
  record_op("matmul", out, {a, b}, [a, b](const Tensor& g) {
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
  });
  return out;
}

}  // namespace attend
