// matmul: (..., M, K) @ (..., K, N) -> (..., M, N), batch dims broadcast.
// Chapter 3 (docs/03-operations.md); the loops are in src/kernels/matmul.cpp.
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

  // The kernel wants each matrix contiguous; batch dims may be broadcast.
  const Tensor ac = a.is_contiguous() ? a : copy_to_contiguous(a);
  const Tensor bc = b.is_contiguous() ? b : copy_to_contiguous(b);
  const Shape a_batch_strides = broadcast_strides(
      a_batch, Shape(ac.strides().begin(), ac.strides().end() - 2), batch, "matmul");
  const Shape b_batch_strides = broadcast_strides(
      b_batch, Shape(bc.strides().begin(), bc.strides().end() - 2), batch, "matmul");
  std::vector<int64_t> a_offsets, b_offsets;  // where each batch's matrices start
  for_each_offset<2>(batch, {&a_batch_strides, &b_batch_strides}, {0, 0},
                     [&](const std::array<int64_t, 2>& o) {
                       a_offsets.push_back(o[0]);
                       b_offsets.push_back(o[1]);
                     });

  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty(out_shape);
  kernels::matmul_batched(ac.data(), a_offsets.data(), bc.data(), b_offsets.data(), out.data(),
                          static_cast<int64_t>(a_offsets.size()), M, K, N);

  // C = A B  =>  dA = dC B^T,  dB = A^T dC  (summed over broadcast batch dims by the engine)
  record_op("matmul", out, {a, b}, [a, b](const Tensor& g) {
    return std::vector<Tensor>{matmul(g, b.transpose(-1, -2)), matmul(a.transpose(-1, -2), g)};
  });
  return out;
}

}  // namespace attend
