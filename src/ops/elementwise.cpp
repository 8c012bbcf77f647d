// Elementwise ops, forward and backward side by side. Binary ops broadcast
// (shape.hpp); the engine sums a broadcast input's gradient back to its shape.
// Chapter 3 (docs/03-operations.md).
#include <cmath>

#include "attend/ops.hpp"
#include "op_helpers.hpp"

namespace attend {

using detail::map_binary;
using detail::map_unary;
using Grads = std::vector<Tensor>;

// --- binary ---

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "add", [](float x, float y) { return x + y; });
  // d(a+b)/da = 1, d(a+b)/db = 1
  record_op("add", out, {a, b}, [](const Tensor& g) { return Grads{g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "sub", [](float x, float y) { return x - y; });
  // d(a-b)/da = 1, d(a-b)/db = -1
  record_op("sub", out, {a, b}, [](const Tensor& g) { return Grads{g, neg(g)}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "mul", [](float x, float y) { return x * y; });
  // d(a*b)/da = b, d(a*b)/db = a
  record_op("mul", out, {a, b}, [a, b](const Tensor& g) { return Grads{g * b, g * a}; });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary(a, b, "div", [](float x, float y) { return x / y; });
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  record_op("div", out, {a, b}, [a, b](const Tensor& g) {
    return Grads{g / b, neg(g * a / (b * b))};
  });
  return out;
}

// A scalar is a 0-d tensor, which broadcasts against anything.
Tensor add(const Tensor& a, float b) { return add(a, scalar_tensor(b)); }
Tensor mul(const Tensor& a, float b) { return mul(a, scalar_tensor(b)); }

// --- unary ---

Tensor neg(const Tensor& x) {
  Tensor out = map_unary(x, "neg", [](float v) { return -v; });
  // d(-x)/dx = -1
  record_op("neg", out, {x}, [](const Tensor& g) { return Grads{neg(g)}; });
  return out;
}

Tensor pow(const Tensor& x, float exponent) {
  Tensor out = map_unary(x, "pow", [exponent](float v) { return std::pow(v, exponent); });
  // d(x^p)/dx = p x^(p-1)
  record_op("pow", out, {x}, [x, exponent](const Tensor& g) {
    return Grads{map_binary(g, x, "pow backward", [exponent](float gv, float v) {
      return gv * exponent * std::pow(v, exponent - 1.0f);
    })};
  });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = map_unary(x, "exp", [](float v) { return std::exp(v); });
  // d(e^x)/dx = e^x, which is the output itself
  record_op("exp", out, {x}, [y = out.detach()](const Tensor& g) { return Grads{g * y}; });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = map_unary(x, "log", [](float v) { return std::log(v); });
  // d(ln x)/dx = 1/x
  record_op("log", out, {x}, [x](const Tensor& g) { return Grads{g / x}; });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = map_unary(x, "sqrt", [](float v) { return std::sqrt(v); });
  // d(sqrt x)/dx = 1 / (2 sqrt x)
  record_op("sqrt", out, {x}, [y = out.detach()](const Tensor& g) { return Grads{g / (2.0f * y)}; });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out = map_unary(x, "tanh", [](float v) { return std::tanh(v); });
  // d(tanh x)/dx = 1 - tanh(x)^2
  record_op("tanh", out, {x}, [y = out.detach()](const Tensor& g) {
    return Grads{map_binary(g, y, "tanh backward", [](float gv, float t) { return gv * (1.0f - t * t); })};
  });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  // 1 / (1 + e^-x), written so that neither branch overflows.
  Tensor out = map_unary(x, "sigmoid", [](float v) {
    if (v >= 0.0f) return 1.0f / (1.0f + std::exp(-v));
    const float e = std::exp(v);
    return e / (1.0f + e);
  });
  // d(sigmoid x)/dx = sigmoid(x) (1 - sigmoid(x))
  record_op("sigmoid", out, {x}, [y = out.detach()](const Tensor& g) {
    return Grads{map_binary(g, y, "sigmoid backward", [](float gv, float s) { return gv * s * (1.0f - s); })};
  });
  return out;
}

Tensor relu(const Tensor& x) {
  // Written so that a NaN passes through (NaN < 0 is false), as in PyTorch:
  // a ReLU that turned NaN into 0 would hide a diverging model.
  Tensor out = map_unary(x, "relu", [](float v) { return v < 0.0f ? 0.0f : v; });
  // d(max(x, 0))/dx = 1 where x > 0, else 0. out > 0 exactly where x > 0, so
  // the backward saves the output, not x: x (a Linear's output, the largest
  // tensor of a feed-forward layer) can then be freed after the forward.
  record_op("relu", out, {x}, [y = out.detach()](const Tensor& g) {
    return Grads{map_binary(g, y, "relu backward", [](float gv, float v) { return v > 0.0f ? gv : 0.0f; })};
  });
  return out;
}

namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
}  // namespace

Tensor gelu(const Tensor& x) {
  Tensor out = map_unary(x, "gelu", [](float v) {
    return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + kGeluCubic * v * v * v)));
  });
  // With u = sqrt(2/pi) (x + 0.044715 x^3) and t = tanh(u):
  // d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
  record_op("gelu", out, {x}, [x](const Tensor& g) {
    return Grads{map_binary(g, x, "gelu backward", [](float gv, float v) {
      const float t = std::tanh(kSqrt2OverPi * (v + kGeluCubic * v * v * v));
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
      return gv * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    })};
  });
  return out;
}

// --- operators ---

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, float b) { return add(a, scalar_tensor(b)); }
Tensor operator+(float a, const Tensor& b) { return add(scalar_tensor(a), b); }
Tensor operator-(const Tensor& a, float b) { return sub(a, scalar_tensor(b)); }
Tensor operator-(float a, const Tensor& b) { return sub(scalar_tensor(a), b); }
Tensor operator*(const Tensor& a, float b) { return mul(a, scalar_tensor(b)); }
Tensor operator*(float a, const Tensor& b) { return mul(scalar_tensor(a), b); }
Tensor operator/(const Tensor& a, float b) { return div(a, scalar_tensor(b)); }
Tensor operator/(float a, const Tensor& b) { return div(scalar_tensor(a), b); }

}  // namespace attend
