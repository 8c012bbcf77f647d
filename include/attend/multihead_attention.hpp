// Multi-head attention: project queries, keys and values, split them into
// heads that attend independently, merge the heads, project the result.
// Chapter 6 (docs/06-multihead-attention.md).
#pragma once

#include <memory>

#include "attend/nn.hpp"

namespace attend {

// (B, T, C) -> (B, H, T, C/H): head h gets channels [h*C/H, (h+1)*C/H).
Tensor split_heads(const Tensor& x, int64_t heads);
// (B, H, T, D) -> (B, T, H*D): the inverse of split_heads.
Tensor merge_heads(const Tensor& x);

namespace nn {

// Self-attention: forward(x, x, x, mask). Cross-attention: forward(y, memory,
// memory, mask), queries from the decoder and keys/values from the encoder.
// Parameters: q_proj, k_proj, v_proj, out_proj (each a Linear d_model -> d_model).
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t d_model, int64_t heads, float dropout, Generator& gen);

  // query: (B, Tq, C), key and value: (B, Tk, C) -> (B, Tq, C).
  // mask: broadcastable to (B, H, Tq, Tk), nonzero = blocked (attention.hpp).
  // If `weights` is given it receives the attention weights (B, H, Tq, Tk).
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const Tensor& mask = Tensor(), Tensor* weights = nullptr);

  int64_t d_model, heads;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
  std::shared_ptr<Dropout> attention_dropout;  // on the attention weights
};

}  // namespace nn
}  // namespace attend
