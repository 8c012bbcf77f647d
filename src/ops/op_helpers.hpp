// Helpers shared by the op implementations in src/ops/ (not a public header):
// argument checks and the elementwise "map" loops with broadcasting.
// Chapter 3 (docs/03-operations.md).
#pragma once

#include <string>

#include "attend/autograd.hpp"
#include "attend/strided.hpp"
#include "attend/tensor.hpp"

namespace attend::detail {

using attend::kColumnsPerTask;     // strided.hpp
using attend::kParallelThreshold;  // strided.hpp

inline void require_float(const Tensor& t, const std::string& op, const char* what = "input") {
  if (!t.defined()) throw Error(op + ": " + what + " is an undefined tensor");
  if (t.dtype() != DType::Float32) {
    throw Error(op + ": " + what + " must be a float32 tensor, got " + to_string(t.dtype()) +
                " of shape " + to_string(t.shape()));
  }
}

inline void require_index(const Tensor& t, const std::string& op, const char* what = "index") {
  if (!t.defined()) throw Error(op + ": " + what + " is an undefined tensor");
  if (t.dtype() != DType::Int64) {
    throw Error(op + ": " + what + " must be an int64 tensor, got " + to_string(t.dtype()) +
                " of shape " + to_string(t.shape()));
  }
}

// Base pointer of a Float32 tensor's storage (offsets from for_each_offset index it).
inline const float* storage_floats(const Tensor& t) {
  return t.impl()->storage->floats.data();
}

// out[i] = f(x[i]); a new contiguous tensor of x's shape.
template <class F>
Tensor map_unary(const Tensor& x, const std::string& op, F f) {
  require_float(x, op);
  Tensor out = empty(x.shape());  // every element is written below
  float* o = out.data();
  const int64_t n = x.numel();
  if (x.is_contiguous()) {  // the common case: one flat loop, split across threads
    const float* p = x.data();
    // `simd` tells the compiler the elements are independent, so it uses
    // vector instructions even for a select such as relu's `v < 0 ? 0 : v`,
    // which it would otherwise compile to a jump per element, mispredicted
    // half the time: relu of (832, 512) took 2.35 ms that way, 48 us this way
    // (add: 149 -> 66 us; one thread, docs/10-speed.md).
#pragma omp parallel for simd if (n >= kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) o[i] = f(p[i]);
  } else {
    const float* base = storage_floats(x);
    parallel_for_each_offset<1>(x.shape(), {&x.strides()}, {x.offset()}, kParallelThreshold,
                                [&](int64_t i, const std::array<int64_t, 1>& off) {
                                  o[i] = f(base[off[0]]);
                                });
  }
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast shape of a and b.
template <class F>
Tensor map_binary(const Tensor& a, const Tensor& b, const std::string& op, F f) {
  require_float(a, op, "first input");
  require_float(b, op, "second input");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = empty(shape);  // every element is written below
  float* o = out.data();
  const int64_t n = out.numel();
  if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
    const float* pa = a.data();
    const float* pb = b.data();
#pragma omp parallel for simd if (n >= kParallelThreshold)  // simd: see map_unary
    for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
  } else {
    // Read both through broadcast strides: stride 0 repeats an element (a
    // bias added to every row). Rows are shared among threads too.
    const Shape sa = broadcast_strides(a.shape(), a.strides(), shape, op);
    const Shape sb = broadcast_strides(b.shape(), b.strides(), shape, op);
    const float* base_a = storage_floats(a);
    const float* base_b = storage_floats(b);
    parallel_for_each_offset<2>(shape, {&sa, &sb}, {a.offset(), b.offset()}, kParallelThreshold,
                                [&](int64_t i, const std::array<int64_t, 2>& off) {
                                  o[i] = f(base_a[off[0]], base_b[off[1]]);
                                });
  }
  return out;
}

}  // namespace attend::detail
