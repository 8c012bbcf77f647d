// Multi-head attention (chapter 6, docs/06-multihead-attention.md).
#include "attend/multihead_attention.hpp"

#include <cmath>
#include <limits>

#include "attend/attention.hpp"
#include "attend/ops.hpp"

namespace attend {

Tensor split_heads(const Tensor& x, int64_t heads) {
  if (x.dim() != 3 || x.size(2) % heads != 0) {
    throw Error("split_heads: expects (B, T, C) with C divisible by " + std::to_string(heads) +
                " heads, got " + to_string(x.shape()));
  }
  // (B, T, C) -> (B, T, H, D) is a free view; the transpose to (B, H, T, D)
  // only swaps strides (the matmul that follows makes it contiguous).
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

Tensor merge_heads(const Tensor& x) {
  if (x.dim() != 4) throw Error("merge_heads: expects (B, H, T, D), got " + to_string(x.shape()));
  // (B, H, T, D) -> (B, T, H, D) -> (B, T, H*D); the reshape copies once.
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

namespace nn {

MultiHeadAttention::MultiHeadAttention(int64_t d_model_, int64_t heads_, float dropout, Generator& gen)
    : d_model(d_model_), heads(heads_) {
  if (heads <= 0 || d_model <= 0 || d_model % heads != 0) {
    throw Error("MultiHeadAttention: d_model " + std::to_string(d_model) +
                " is not divisible by heads " + std::to_string(heads));
  }
  q_proj = register_module("q_proj", std::make_shared<Linear>(d_model, d_model, gen));
  k_proj = register_module("k_proj", std::make_shared<Linear>(d_model, d_model, gen));
  v_proj = register_module("v_proj", std::make_shared<Linear>(d_model, d_model, gen));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d_model, d_model, gen));
  attention_dropout = register_module("attention_dropout", std::make_shared<Dropout>(dropout, gen));
}

Tensor MultiHeadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                   const Tensor& mask, Tensor* weights) {
  const bool shapes_ok = query.defined() && key.defined() && value.defined() && query.dim() == 3 &&
                         key.dim() == 3 && value.dim() == 3 && query.size(2) == d_model &&
                         key.size(2) == d_model && value.size(2) == d_model &&
                         key.size(0) == query.size(0) && value.size(0) == query.size(0) &&
                         key.size(1) == value.size(1);
  if (!shapes_ok) {
    throw Error("MultiHeadAttention: query " + (query.defined() ? to_string(query.shape()) : "?") +
                ", key " + (key.defined() ? to_string(key.shape()) : "?") + ", value " +
                (value.defined() ? to_string(value.shape()) : "?") + " do not fit: expected (B, Tq, " +
                std::to_string(d_model) + "), (B, Tk, " + std::to_string(d_model) + "), (B, Tk, " +
                std::to_string(d_model) + ")");
  }
  const Tensor q = split_heads(q_proj->forward(query), heads);  // (B, H, Tq, D)
  const Tensor k = split_heads(k_proj->forward(key), heads);    // (B, H, Tk, D)
  const Tensor v = split_heads(v_proj->forward(value), heads);  // (B, H, Tk, D)
  // The attention of chapter 5, with dropout on the weights while training.
  const Tensor w = attention_dropout->forward(attention_weights(q, k, mask));  // (B, H, Tq, Tk)
  if (weights) *weights = w;
  const Tensor attention = matmul(w, v);  // (B, H, Tq, D)
  return out_proj->forward(merge_heads(attention));  // (B, Tq, C)
}

}  // namespace nn
}  // namespace attend
