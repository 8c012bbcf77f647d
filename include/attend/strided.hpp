// Walking a strided array: visit every index of a shape in row-major order
// and compute where that element lives in each of several operands.
// Chapter 1 (docs/01-tensors.md). Used by copies and every elementwise op.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "attend/shape.hpp"

namespace attend {

// Calls body(offsets) once per element of `shape`, in row-major order, where
// offsets[k] = start[k] + sum_d index[d] * strides[k][d] is the element's
// position in operand k. An "odometer" over the index: the last dimension
// turns fastest, and when it wraps the next one to the left steps by one.
template <size_t N, class Body>
void for_each_offset(const Shape& shape, const std::array<const Shape*, N>& strides,
                     std::array<int64_t, N> start, Body&& body) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  if (numel(shape) == 0) return;
  if (rank == 0) {
    body(start);
    return;
  }
  std::vector<int64_t> index(rank, 0);
  const int64_t inner = shape[rank - 1];
  std::array<int64_t, N> inner_step;
  for (size_t k = 0; k < N; ++k) inner_step[k] = (*strides[k])[rank - 1];
  for (;;) {
    std::array<int64_t, N> offsets = start;
    for (int64_t i = 0; i < inner; ++i) {
      body(offsets);
      for (size_t k = 0; k < N; ++k) offsets[k] += inner_step[k];
    }
    // Advance the odometer over dims rank-2 ... 0.
    int64_t d = rank - 2;
    for (; d >= 0; --d) {
      ++index[d];
      for (size_t k = 0; k < N; ++k) start[k] += (*strides[k])[d];
      if (index[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) start[k] -= (*strides[k])[d] * shape[d];
      index[d] = 0;
    }
    if (d < 0) return;
  }
}

}  // namespace attend
