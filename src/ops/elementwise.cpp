// Elementwise ops, forward and backward side by side. Binary ops broadcast
// (shape.hpp); the engine sums a broadcast input's gradient back to its shape.
// Chapter 3 (docs/03-operations.md). Each op also names its case of the
// strided CUDA kernel (kernels::UnaryOp / BinaryOp, chapter 11), whose
// formulas the CPU lambdas share (attend/elementwise_kernels.hpp).
#include <cmath>

#include "attend/ops.hpp"
#include "op_helpers.hpp"

namespace attend {

using detail::map_binary;
using detail::map_unary;
using kernels::BinaryOp;
using kernels::UnaryOp;
using Grads = std::vector<Tensor>;

// --- binary ---

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "add", BinaryOp::add, [](float x, float y) { return x + y; });
  // d(a+b)/da = 1, d(a+b)/db = 1
  record_op("add", out, {a, b}, [](const Tensor& g) { return Grads{g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "sub", BinaryOp::sub, [](float x, float y) { return x - y; });
  // d(a-b)/da = 1, d(a-b)/db = -1
  record_op("sub", out, {a, b}, [](const Tensor& g) { return Grads{g, neg(g)}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "mul", BinaryOp::mul, [](float x, float y) { return x * y; });
  // d(a*b)/da = b, d(a*b)/db = a
  record_op("mul", out, {a, b}, [a, b](const Tensor& g) { return Grads{g * b, g * a}; });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "div", BinaryOp::div, [](float x, float y) { return x / y; });
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  record_op("div", out, {a, b}, [a, b](const Tensor& g) {
    return Grads{g / b, neg(g * a / (b * b))};
  });
  return out;
}

// A scalar is a 0-d tensor, which broadcasts against anything; it is made on
// the tensor's device.
Tensor add(const Tensor& a, float b) { return add(a, scalar_tensor(b, a.device())); }
Tensor mul(const Tensor& a, float b) { return mul(a, scalar_tensor(b, a.device())); }

// --- unary ---

Tensor neg(const Tensor& x) {
  Tensor out = map_unary(x, "neg", UnaryOp::neg, [](float v) { return -v; });
  // d(-x)/dx = -1
  record_op("neg", out, {x}, [](const Tensor& g) { return Grads{neg(g)}; });
  return out;
}

Tensor pow(const Tensor& x, float exponent) {
  Tensor out = map_unary(x, "pow", UnaryOp::pow, [exponent](float v) { return std::pow(v, exponent); },
                         exponent);
  // d(x^p)/dx = p x^(p-1)
  record_op("pow", out, {x}, [x, exponent](const Tensor& g) {
    return Grads{map_binary(g, x, "pow backward", BinaryOp::pow_backward,
                            [exponent](float gv, float v) { return kernels::pow_backward_value(gv, v, exponent); },
                            exponent)};
  });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = map_unary(x, "exp", UnaryOp::exp, [](float v) { return std::exp(v); });
  // d(e^x)/dx = e^x, which is the output itself
  record_op("exp", out, {x}, [y = out.detach()](const Tensor& g) { return Grads{g * y}; });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = map_unary(x, "log", UnaryOp::log, [](float v) { return std::log(v); });
  // d(ln x)/dx = 1/x
  record_op("log", out, {x}, [x](const Tensor& g) { return Grads{g / x}; });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = map_unary(x, "sqrt", UnaryOp::sqrt, [](float v) { return std::sqrt(v); });
  // d(sqrt x)/dx = 1 / (2 sqrt x)
  record_op("sqrt", out, {x}, [y = out.detach()](const Tensor& g) { return Grads{g / (2.0f * y)}; });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out = map_unary(x, "tanh", UnaryOp::tanh, [](float v) { return std::tanh(v); });
  // d(tanh x)/dx = 1 - tanh(x)^2
  record_op("tanh", out, {x}, [y = out.detach()](const Tensor& g) {
    return Grads{map_binary(g, y, "tanh backward", BinaryOp::tanh_backward,
                            [](float gv, float t) { return kernels::tanh_backward_value(gv, t); })};
  });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  // 1 / (1 + e^-x), written so that neither branch overflows.
  Tensor out = map_unary(x, "sigmoid", UnaryOp::sigmoid, [](float v) { return kernels::sigmoid_value(v); });
  // d(sigmoid x)/dx = sigmoid(x) (1 - sigmoid(x))
  record_op("sigmoid", out, {x}, [y = out.detach()](const Tensor& g) {
    return Grads{map_binary(g, y, "sigmoid backward", BinaryOp::sigmoid_backward,
                            [](float gv, float s) { return kernels::sigmoid_backward_value(gv, s); })};
  });
  return out;
}

Tensor relu(const Tensor& x) {
  // A NaN passes through, as in PyTorch (relu_value says why).
  Tensor out = map_unary(x, "relu", UnaryOp::relu, [](float v) { return kernels::relu_value(v); });
  // d(max(x, 0))/dx = 1 where x > 0, else 0. out > 0 exactly where x > 0, so
  // the backward saves the output, not x: x (a Linear's output, the largest
  // tensor of a feed-forward layer) can then be freed after the forward.
  record_op("relu", out, {x}, [y = out.detach()](const Tensor& g) {
    return Grads{map_binary(g, y, "relu backward", BinaryOp::relu_backward,
                            [](float gv, float v) { return kernels::relu_backward_value(gv, v); })};
  });
  return out;
}

Tensor gelu(const Tensor& x) {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): gelu_value
  Tensor out = map_unary(x, "gelu", UnaryOp::gelu, [](float v) { return kernels::gelu_value(v); });
  // The derivative is gelu_backward_value's comment.
  record_op("gelu", out, {x}, [x](const Tensor& g) {
    return Grads{map_binary(g, x, "gelu backward", BinaryOp::gelu_backward,
                            [](float gv, float v) { return kernels::gelu_backward_value(gv, v); })};
  });
  return out;
}

// --- operators ---

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, float b) { return add(a, scalar_tensor(b, a.device())); }
Tensor operator+(float a, const Tensor& b) { return add(scalar_tensor(a, b.device()), b); }
Tensor operator-(const Tensor& a, float b) { return sub(a, scalar_tensor(b, a.device())); }
Tensor operator-(float a, const Tensor& b) { return sub(scalar_tensor(a, b.device()), b); }
Tensor operator*(const Tensor& a, float b) { return mul(a, scalar_tensor(b, a.device())); }
Tensor operator*(float a, const Tensor& b) { return mul(scalar_tensor(a, b.device()), b); }
Tensor operator/(const Tensor& a, float b) { return div(a, scalar_tensor(b, a.device())); }
Tensor operator/(float a, const Tensor& b) { return div(scalar_tensor(a, b.device()), b); }

}  // namespace attend
