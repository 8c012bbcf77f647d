// Multi-head attention: project queries, keys and values, split them into
// heads that attend independently, merge the heads, project the result.
// Chapter 6 (docs/06-multihead-attention.md); chapter 9 (docs/09-decoding.md)
// adds the KV cache for decoding one token at a time.
#pragma once

#include <memory>

#include "attend/nn.hpp"

namespace attend::nn {

// (B, T, C) -> (B, H, T, C/H): head h gets channels [h*C/H, (h+1)*C/H).
Tensor split_heads(const Tensor& x, int64_t heads);
// (B, H, T, D) -> (B, T, H*D): the inverse of split_heads.
Tensor merge_heads(const Tensor& x);


// The keys and values of the positions seen so far, kept between decoding
// steps (chapter 9). Preallocated for `capacity` positions; each step writes
// the new positions' keys and values after the `length` already there, so
// nothing is ever recomputed or moved. Rows are sentences (or beams).
struct KVCache {
  Tensor keys, values;  // (B, H, capacity, D); positions [0, length) are filled
  int64_t length = 0;

  KVCache() = default;
  KVCache(int64_t batch, int64_t heads, int64_t capacity, int64_t head_dim);

  int64_t capacity() const { return keys.defined() ? keys.size(2) : 0; }
  // new_keys, new_values: (B, H, T, D) -> written at positions [length, length + T).
  void append(const Tensor& new_keys, const Tensor& new_values);
  // Views (B, H, length, D) of the filled part (strided: no copy).
  Tensor filled_keys() const { return keys.narrow(2, 0, length); }
  Tensor filled_values() const { return values.narrow(2, 0, length); }
  // Row i becomes what row index[i] was (index: Int64 (B')). B' may differ
  // from B: repeating rows turns B sentences into B * K beams.
  void reorder(const Tensor& index);
  // Bytes held by keys and values (the whole capacity).
  int64_t bytes() const;
};

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

  // The part of forward after the key and value projections, shared by every
  // way of calling it: project the queries, attend, merge heads, project out.
  // query: (B, Tq, C); k, v: (B, H, Tk, D) already projected and split
  // (views are fine) -> (B, Tq, C). mask and weights as in forward.
  Tensor attend_to(const Tensor& query, const Tensor& k, const Tensor& v, const Tensor& mask = Tensor(),
                   Tensor* weights = nullptr);

  // Chapter 9: x (B, T, C) -> its keys and values, split into heads, in a
  // cache of exactly T positions. For cross-attention: the encoder output's
  // keys and values, computed once per source sentence.
  KVCache cache_keys_values(const Tensor& x);

  // Chapter 9: causal self-attention for new positions only. x: (B, Tn, C),
  // the positions [cache.length, cache.length + Tn) -> (B, Tn, C). Their keys
  // and values are appended to the cache, then their queries attend to every
  // cached position up to their own. Gives what forward(x_all, x_all, x_all,
  // causal_mask) gives at those positions, without recomputing the others.
  Tensor forward_cached(const Tensor& x, KVCache& cache, Tensor* weights = nullptr);

  int64_t d_model, heads;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
  std::shared_ptr<Dropout> attention_dropout;  // on the attention weights

  // Chapter 9: when true, every call keeps its attention weights (B, H, Tq, Tk)
  // in last_weights, so pictures can be drawn after a forward pass.
  bool record_weights = false;
  Tensor last_weights;
};

}  // namespace attend::nn
