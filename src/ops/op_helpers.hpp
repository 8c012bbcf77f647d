// Helpers shared by the op implementations in src/ops/ (not a public header):
// argument checks and the elementwise "map" loops with broadcasting.
// Chapter 3 (docs/03-operations.md); their device side (the CUDA kernels of
// src/kernels/elementwise.cu) is chapter 11's (docs/11-cuda.md).
#pragma once

#include <string>

#include "attend/autograd.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/parallel.hpp"
#include "attend/strided.hpp"
#include "attend/tensor.hpp"

namespace attend::detail {

using attend::kColumnsPerTask;     // strided.hpp
using attend::kParallelThreshold;  // strided.hpp

// Where an op runs: most ops have only their CPU loops so far (issue 15 is
// porting them); an op with a CUDA kernel says Runs::on_any_device.
enum class Runs { on_cpu_only, on_any_device };

inline void require_float(const Tensor& t, const std::string& op, const char* what = "input",
                          Runs runs = Runs::on_cpu_only) {
  if (!t.defined()) throw Error(op + ": " + what + " is an undefined tensor");
  if (t.dtype() != DType::Float32) {
    throw Error(op + ": " + what + " must be a float32 tensor, got " + to_string(t.dtype()) +
                " of shape " + to_string(t.shape()));
  }
  if (runs == Runs::on_cpu_only && t.device() != Device::cpu) {
    throw Error(op + ": runs on the CPU only so far, and its " + what + " of shape " +
                to_string(t.shape()) + " is on " + to_string(t.device()) +
                " (copy it to the host with .cpu())");
  }
}

// The inputs of an op must be on one device: data never moves behind the
// program's back (docs/11-cuda.md, "Tensors on the device").
inline void require_same_device(const Tensor& a, const Tensor& b, const std::string& op,
                                const char* a_name = "first input",
                                const char* b_name = "second input") {
  if (a.device() != b.device()) {
    throw Error(op + ": the inputs are on two devices: the " + a_name + " " + to_string(a.shape()) +
                " on " + to_string(a.device()) + ", the " + b_name + " " + to_string(b.shape()) +
                " on " + to_string(b.device()) + " (move one with .to())");
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
  if (t.device() != Device::cpu) (void)t.data();  // throws: host code does not read device memory
  return t.impl()->storage->floats.data();
}

// out[i] = f(x[i]); a new contiguous tensor of x's shape. On the device, the
// kernel computes unary_value(device_op, x[i], scalar), the same formula.
template <class F>
Tensor map_unary(const Tensor& x, const std::string& op, kernels::UnaryOp device_op, F f,
                 float scalar = 0.0f) {
  require_float(x, op, "input", Runs::on_any_device);
  if (x.device() == Device::cuda) {
    Tensor out = empty(x.shape(), Device::cuda);
    kernels::unary_device(device_op, scalar, x.device_data(), device_strides(x.strides()),
                          out.device_data(), device_shape(x.shape(), op));
    return out;
  }
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
    parallel_for_simd(n, n >= kParallelThreshold, [&](int64_t i) { o[i] = f(p[i]); });
  } else {
    const float* base = storage_floats(x);
    parallel_for_each_offset<1>(x.shape(), {&x.strides()}, {x.offset()}, kParallelThreshold,
                                [&](int64_t i, const std::array<int64_t, 1>& off) {
                                  o[i] = f(base[off[0]]);
                                });
  }
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast shape of a and b. On the
// device, the kernel computes binary_value(device_op, a[i], b[i], scalar).
template <class F>
Tensor map_binary(const Tensor& a, const Tensor& b, const std::string& op,
                  kernels::BinaryOp device_op, F f, float scalar = 0.0f) {
  require_float(a, op, "first input", Runs::on_any_device);
  require_float(b, op, "second input", Runs::on_any_device);
  require_same_device(a, b, op);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  if (a.device() == Device::cuda) {
    Tensor out = empty(shape, Device::cuda);
    kernels::binary_device(device_op, scalar, a.device_data(),
                           device_strides(broadcast_strides(a.shape(), a.strides(), shape, op)),
                           b.device_data(),
                           device_strides(broadcast_strides(b.shape(), b.strides(), shape, op)),
                           out.device_data(), device_shape(shape, op));
    return out;
  }
  Tensor out = empty(shape);  // every element is written below
  float* o = out.data();
  const int64_t n = out.numel();
  if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
    const float* pa = a.data();
    const float* pb = b.data();
    parallel_for_simd(n, n >= kParallelThreshold, [&](int64_t i) { o[i] = f(pa[i], pb[i]); });
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
