// Scaled dot-product attention, the masks it uses, and a way to look at its
// weights in a terminal. Chapter 5 (docs/05-attention.md).
//
// Mask convention (as in PyTorch's boolean masks): a nonzero entry means
// "this query may NOT look at this key". Masks broadcast against the scores
// (..., Tq, Tk), so a padding mask (B, 1, 1, Tk) and a causal mask (Tq, Tk)
// combine by simply adding them (or passing either alone).
#pragma once

#include <string>
#include <vector>

#include "attend/tensor.hpp"

namespace attend::nn {

// softmax(q k^T / sqrt(D)), with masked scores set to -inf before the softmax.
//   q: (..., Tq, D), k: (..., Tk, D) -> weights (..., Tq, Tk), each row sums to 1
// (or is all zeros when every key of that query is masked).
Tensor attention_weights(const Tensor& q, const Tensor& k, const Tensor& mask = Tensor());

// attention_weights(q, k, mask) v
//   q: (..., Tq, D), k: (..., Tk, D), v: (..., Tk, Dv) -> (..., Tq, Dv)
// mask (optional): broadcastable to (..., Tq, Tk), nonzero = blocked.
// If `weights` is given it receives the attention weights (..., Tq, Tk).
// A query whose keys are all masked gets zero weights and a zero output.
// Written from the differentiable ops of chapter 3, so autograd gives its backward.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask = Tensor(), Tensor* weights = nullptr);

// (T, T): 1 above the diagonal, so position t sees positions 0..t only.
Tensor causal_mask(int64_t T);

// ids: (B, T) Int64 -> (B, 1, 1, T): 1 where ids == pad_id. Broadcasts
// against scores (B, H, Tq, T): no query looks at a padding key.
Tensor padding_mask(const Tensor& ids, int64_t pad_id);

// Either mask, or their union when both are given (1 where either is 1).
Tensor combine_masks(const Tensor& a, const Tensor& b);

}  // namespace attend::nn
