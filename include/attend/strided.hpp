// Walking a strided array: visit every index of a shape in row-major order
// and compute where that element lives in each of several operands.
// Chapter 1 (docs/01-tensors.md). Used by copies and every elementwise op.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "attend/elementwise_kernels.hpp"
#include "attend/parallel.hpp"
#include "attend/shape.hpp"

namespace attend {

// Elementwise loops over at least this many elements are split across
// threads (below it, waking the threads costs more than they save).
constexpr int64_t kParallelThreshold = 1 << 15;

// Sums down the columns of a (rows, C) array (a bias's gradient, layer
// norm's dweight, the embedding's scatter-add) are shared among threads in
// strips of this many columns (16 floats: one cache line of each row). Each
// column is still summed row by row in order by one thread: the same bits
// on any number of threads, and no two threads add to one place.
constexpr int64_t kColumnsPerTask = 16;

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

// Calls body(r, offsets) once per row of `shape` (a row: the last dim; a
// 0-d shape is one row of one element), rows shared among threads
// when there are at least `parallel_from` elements. r is the row's number in
// row-major order and offsets[k] the position of its first element in
// operand k. A row finds its first element by dividing its number into an
// index (a few divisions per row, against the row's elements).
template <size_t N, class Body>
void parallel_for_each_row(const Shape& shape, const std::array<const Shape*, N>& strides,
                           const std::array<int64_t, N>& start, int64_t parallel_from, Body&& body) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t n = numel(shape);
  if (n == 0) return;
  if (rank == 0) {
    body(int64_t{0}, start);
    return;
  }
  const int64_t rows = n / shape[rank - 1];
  parallel_for(rows, n >= parallel_from, [&](int64_t r) {
    std::array<int64_t, N> offsets = start;
    int64_t rest = r;  // the row's index over dims rank-2 ... 0
    for (int64_t d = rank - 2; d >= 0; --d) {
      const int64_t index = rest % shape[d];
      rest /= shape[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += index * (*strides[k])[d];
    }
    body(r, offsets);
  });
}

// The visit of for_each_offset with the rows shared among threads as above;
// body(i, offsets) also gets the element's row-major position i. Chapter 10:
// a broadcast or strided elementwise op then uses every core, as the
// contiguous ones do. Each element is visited exactly once, by whichever
// thread, so a body that writes only element i gives the same bits on any
// number of threads.
template <size_t N, class Body>
void parallel_for_each_offset(const Shape& shape, const std::array<const Shape*, N>& strides,
                              const std::array<int64_t, N>& start, int64_t parallel_from,
                              Body&& body) {
  const int64_t inner = shape.empty() ? 1 : shape.back();
  std::array<int64_t, N> inner_step{};
  if (!shape.empty()) {
    for (size_t k = 0; k < N; ++k) inner_step[k] = strides[k]->back();
  }
  parallel_for_each_row<N>(shape, strides, start, parallel_from, [&](int64_t r, std::array<int64_t, N> offsets) {
    for (int64_t i = 0; i < inner; ++i) {
      body(r * inner + i, offsets);
      for (size_t k = 0; k < N; ++k) offsets[k] += inner_step[k];
    }
  });
}

// A shape and its strides as a CUDA kernel takes them, by value (chapter 11,
// src/kernels/elementwise.cu): the kernel's strided_offset() is the odometer
// above, one thread per element. At most kernels::kMaxDeviceDims dims.
inline kernels::DeviceShape device_shape(const Shape& shape, const std::string& op) {
  if (shape.size() > static_cast<size_t>(kernels::kMaxDeviceDims)) {
    throw Error(op + ": shape " + to_string(shape) + " has more than " +
                std::to_string(kernels::kMaxDeviceDims) + " dims, the most a device kernel takes");
  }
  kernels::DeviceShape out;
  out.rank = static_cast<int>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) out.sizes[d] = shape[d];
  return out;
}

inline kernels::DeviceStrides device_strides(const Shape& strides) {
  kernels::DeviceStrides out;
  for (size_t d = 0; d < strides.size() && d < static_cast<size_t>(kernels::kMaxDeviceDims); ++d) {
    out.values[d] = strides[d];
  }
  return out;
}

}  // namespace attend
