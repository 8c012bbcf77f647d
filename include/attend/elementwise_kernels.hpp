// The scalar math of the elementwise ops, written once for both devices: the
// CPU loops of src/ops/elementwise.cpp call these functions directly, the
// strided CUDA kernels of src/kernels/elementwise.cu through the UnaryOp and
// BinaryOp switches. Also how a kernel receives an operand's layout
// (DeviceShape, DeviceStrides). Chapter 11 (docs/11-cuda.md, "Tensors on the device").
#pragma once

#include <math.h>  // expf, tanhf, ...: the same functions on the host and in CUDA device code

#include <cstdint>

#include "attend/host_device.hpp"

namespace attend::kernels {

// --- an operand's layout, passed to a kernel by value ---------------------------

constexpr int kMaxDeviceDims = 8;

// The sizes of an array of rank <= kMaxDeviceDims.
struct DeviceShape {
  int rank = 0;
  int64_t sizes[kMaxDeviceDims] = {};
};

ATTEND_HOST_DEVICE inline int64_t element_count(const DeviceShape& shape) {
  int64_t count = 1;
  for (int d = 0; d < shape.rank; ++d) count *= shape.sizes[d];
  return count;
}

// Where each element of a DeviceShape lives in one operand: element
// (i0, i1, ...) is data[i0 * values[0] + i1 * values[1] + ...] (0 along a
// broadcast dim).
struct DeviceStrides {
  int64_t values[kMaxDeviceDims] = {};
};

// The position of element number `index` (row-major over `shape`) in an
// operand with `strides`: the index's digits, last dim turning fastest.
ATTEND_HOST_DEVICE inline int64_t strided_offset(const DeviceShape& shape,
                                                 const DeviceStrides& strides, int64_t index) {
  int64_t offset = 0;
  for (int d = shape.rank - 1; d >= 0; --d) {
    offset += index % shape.sizes[d] * strides.values[d];
    index /= shape.sizes[d];
  }
  return offset;
}

// --- the formulas ------------------------------------------------------------------

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// max(x, 0), written so that a NaN passes through (NaN < 0 is false), as in
// PyTorch: a ReLU that turned NaN into 0 would hide a diverging model.
ATTEND_HOST_DEVICE inline float relu_value(float x) { return x < 0.0f ? 0.0f : x; }
// d(max(x, 0))/dx = 1 where x > 0, else 0
ATTEND_HOST_DEVICE inline float relu_backward_value(float grad, float x) { return x > 0.0f ? grad : 0.0f; }

// d(tanh x)/dx = 1 - tanh(x)^2, from the output y = tanh(x)
ATTEND_HOST_DEVICE inline float tanh_backward_value(float grad, float y) { return grad * (1.0f - y * y); }

// 1 / (1 + e^-x), written so that neither branch overflows.
ATTEND_HOST_DEVICE inline float sigmoid_value(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}
// d(sigmoid x)/dx = s (1 - s), from the output s = sigmoid(x)
ATTEND_HOST_DEVICE inline float sigmoid_backward_value(float grad, float s) { return grad * s * (1.0f - s); }

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
ATTEND_HOST_DEVICE inline float gelu_value(float x) {
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
}
// With u = sqrt(2/pi) (x + 0.044715 x^3) and t = tanh(u):
// d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
ATTEND_HOST_DEVICE inline float gelu_backward_value(float grad, float x) {
  const float t = tanhf(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return grad * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
}

// d(x^p)/dx = p x^(p-1)
ATTEND_HOST_DEVICE inline float pow_backward_value(float grad, float x, float exponent) {
  return grad * exponent * powf(x, exponent - 1.0f);
}

// 1 where x is nonzero, else 0: a mask as floats.
ATTEND_HOST_DEVICE inline float nonzero_value(float x) { return x != 0.0f ? 1.0f : 0.0f; }
// `value` where the mask is nonzero, else x.
ATTEND_HOST_DEVICE inline float masked_fill_value(float x, float mask, float value) {
  return mask != 0.0f ? value : x;
}

// --- the ops a strided device kernel can apply ----------------------------------------

enum class UnaryOp { neg, exp, log, sqrt, tanh, sigmoid, relu, gelu, pow, nonzero };

// BinaryOp: a op b. The *_backward ones take (grad, saved value);
// masked_fill takes (x, mask).
enum class BinaryOp {
  add, sub, mul, div,
  relu_backward, tanh_backward, sigmoid_backward, gelu_backward, pow_backward,
  masked_fill
};

// `scalar` is pow's exponent (and masked_fill's value); the other ops ignore it.
ATTEND_HOST_DEVICE inline float unary_value(UnaryOp op, float x, float scalar) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return expf(x);
    case UnaryOp::log: return logf(x);
    case UnaryOp::sqrt: return sqrtf(x);
    case UnaryOp::tanh: return tanhf(x);
    case UnaryOp::sigmoid: return sigmoid_value(x);
    case UnaryOp::relu: return relu_value(x);
    case UnaryOp::gelu: return gelu_value(x);
    case UnaryOp::pow: return powf(x, scalar);
    case UnaryOp::nonzero: return nonzero_value(x);
  }
  return x;  // not reached: every op is a case above
}

ATTEND_HOST_DEVICE inline float binary_value(BinaryOp op, float a, float b, float scalar) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::relu_backward: return relu_backward_value(a, b);
    case BinaryOp::tanh_backward: return tanh_backward_value(a, b);
    case BinaryOp::sigmoid_backward: return sigmoid_backward_value(a, b);
    case BinaryOp::gelu_backward: return gelu_backward_value(a, b);
    case BinaryOp::pow_backward: return pow_backward_value(a, b, scalar);
    case BinaryOp::masked_fill: return masked_fill_value(a, b, scalar);
  }
  return a;  // not reached
}

}  // namespace attend::kernels
