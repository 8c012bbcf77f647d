// Scaled dot-product attention and its masks, built from chapter 3's ops.
// Chapter 5 (docs/05-attention.md).
#include "attend/attention.hpp"

#include <cmath>
#include <limits>

#include "attend/ops.hpp"

namespace attend::nn {

Tensor attention_weights(const Tensor& q, const Tensor& k, const Tensor& mask) {
  const std::string op = "attention_weights";
  if (!q.defined() || !k.defined() || q.dim() < 2 || k.dim() < 2 || q.size(-1) != k.size(-1)) {
    throw Error(op + ": q " + (q.defined() ? to_string(q.shape()) : "?") + " and k " +
                (k.defined() ? to_string(k.shape()) : "?") +
                " do not fit: need q (..., Tq, D) and k (..., Tk, D)");
  }
  // exercise 5.1 begin: attention weights = softmax(q k^T / sqrt(D)) over the keys, masked keys at -inf
  const float scale = 1.0f / std::sqrt(static_cast<float>(q.size(-1)));
  // scores[i][j] = q_i . k_j / sqrt(D): how well query i matches key j.
  Tensor scores = matmul(q, k.transpose(-1, -2)) * scale;  // (..., Tq, Tk)
  if (mask.defined()) {
    // exp(-inf) = 0: a blocked key gets exactly zero weight.
    scores = masked_fill(scores, mask, -std::numeric_limits<float>::infinity());
  }
  // Each row becomes a probability distribution over the keys (a row with
  // every key blocked is all zeros: see softmax in src/ops/softmax.cpp).
  return softmax(scores, -1);
  // exercise 5.1 end
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask, Tensor* weights) {
  if (!v.defined() || v.dim() < 2 || !k.defined() || k.dim() < 2 || k.size(-2) != v.size(-2)) {
    throw Error("scaled_dot_product_attention: k " + (k.defined() ? to_string(k.shape()) : "?") +
                " and v " + (v.defined() ? to_string(v.shape()) : "?") +
                " do not fit: need k (..., Tk, D) and v (..., Tk, Dv)");
  }
  // exercise 5.2 begin: the weights, stored in *weights if asked, times v
  const Tensor w = attention_weights(q, k, mask);  // (..., Tq, Tk)
  if (weights) *weights = w;
  return matmul(w, v);  // (..., Tq, Dv): for each query, a weighted average of the values
  // exercise 5.2 end
}

Tensor causal_mask(int64_t T) {
  Tensor m = zeros({T, T});
  float* p = m.data();
  // exercise 5.3 begin: the causal mask: 1 where key j is in query i's future (j > i), else 0
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = i + 1; j < T; ++j) p[i * T + j] = 1.0f;  // j > i: the future
  }
  // exercise 5.3 end
  return m;
}

Tensor padding_mask(const Tensor& ids, int64_t pad_id) {
  if (!ids.defined() || ids.dtype() != DType::Int64 || ids.dim() != 2) {
    throw Error("padding_mask: ids must be an int64 tensor of shape (B, T), got " +
                (ids.defined() ? to_string(ids.shape()) + " " + to_string(ids.dtype()) : std::string("undefined")));
  }
  // On the device: a kernel compares the ids there (chapter 11).
  if (ids.device() == Device::cuda) return index_flags(ids, pad_id).reshape({ids.size(0), 1, 1, ids.size(1)});
  // exercise 5.4 begin: the padding mask (B, 1, 1, T): 1 where ids is pad_id
  const std::vector<int64_t> values = ids.to_index_vector();
  std::vector<float> flags(values.size());
  for (size_t i = 0; i < values.size(); ++i) flags[i] = values[i] == pad_id ? 1.0f : 0.0f;
  return from_vector(flags, {ids.size(0), 1, 1, ids.size(1)});
  // exercise 5.4 end
}

Tensor combine_masks(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  // max(a, b) of two 0/1 masks is their union; broadcasting gives the joint shape.
  const Tensor both = add(a, b);
  return masked_fill(zeros(both.shape(), both.device()), both, 1.0f);
}

}  // namespace attend::nn
