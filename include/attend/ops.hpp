// The differentiable operations. Chapter 3 (docs/03-operations.md).
// Each op is written once, forward and backward side by side, in src/ops/:
//   elementwise.cpp  add sub mul div neg pow exp log sqrt tanh sigmoid relu gelu
//   reduction.cpp    sum mean max argmax
//   matmul.cpp       matmul, linear (kernels in src/kernels/matmul.cpp)
//   softmax.cpp      softmax log_softmax
//   indexing.cpp     masked_fill where cat split stack index_select embedding index_flags
//   nn_functional.cpp  layer_norm dropout cross_entropy
//   views.cpp        reshape transpose permute slice ... (the Tensor methods)
// Elementwise binary ops broadcast their inputs (NumPy rules, shape.hpp).
#pragma once

#include <vector>

#include "attend/random.hpp"
#include "attend/tensor.hpp"

namespace attend {

// --- elementwise, with broadcasting ---
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, float b);
Tensor mul(const Tensor& a, float b);
Tensor neg(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
Tensor gelu(const Tensor& x);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, float b);
Tensor operator+(float a, const Tensor& b);
Tensor operator-(const Tensor& a, float b);
Tensor operator-(float a, const Tensor& b);
Tensor operator*(const Tensor& a, float b);
Tensor operator*(float a, const Tensor& b);
Tensor operator/(const Tensor& a, float b);
Tensor operator/(float a, const Tensor& b);

// --- reductions over `dims` (negative dims count from the end) ---
// keepdim keeps each reduced dim with size 1, so the result broadcasts
// against the input: x - mean(x, {-1}, true).
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // over everything: a 0-d tensor
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
// The gradient goes to the first maximum of each reduced group.
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& x);
// Index of the first maximum along `dim` (Int64, not differentiable).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

// --- matrix multiplication ---
// a: (..., M, K), b: (..., K, N) -> (..., M, N); the batch dims (...) broadcast.
// Both inputs need at least 2 dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out):
// x weight^T + bias as one op (chapter 10), what nn::Linear computes.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// --- softmax along a dim (stable: the max is subtracted first) ---
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// --- selecting and combining ---
// x where mask is zero, `value` where it is not; mask (Float32 or Int64)
// broadcasts to x's shape.
Tensor masked_fill(const Tensor& x, const Tensor& mask, float value);
// a where condition is nonzero, b elsewhere; all three broadcast together.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
// Joins tensors along an existing dim; all other sizes must agree.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
// Joins tensors of one shape along a new dim.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Views of consecutive pieces of `split_size` along dim (the last may be shorter).
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
// Views of pieces with the given sizes, which must add up to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// Entries of x at `index` (Int64, 1-D) along dim; the backward scatter-adds,
// so a row picked twice gets both gradients.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// weight: (V, D), ids: any shape of Int64 in [0, V) -> (*ids.shape, D).
// Rows of ids equal to padding_idx (if >= 0) receive no gradient.
Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx = -1);
// ids: Int64 of any shape -> Float32 of its shape on its device: 1 where
// ids == value (equal) or ids != value (!equal), else 0. A padding mask.
Tensor index_flags(const Tensor& ids, int64_t value, bool equal = true);

// --- building blocks of networks ---
// Normalises over the last dim: (x - mean) / sqrt(var + eps) * weight + bias.
// x: (..., C), weight and bias: (C) or undefined (no affine part).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);
// Zeroes each element with probability p and scales the rest by 1/(1-p), so
// the expected value is unchanged; the identity when !training or p == 0.
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen);
// Mean cross-entropy. logits: (..., C), targets: (...) Int64 class ids.
// Targets equal to ignore_index count for nothing (neither loss nor mean).
// With label_smoothing e the target distribution is (1-e) one-hot + e/C.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     float label_smoothing = 0.0f);

}  // namespace attend
