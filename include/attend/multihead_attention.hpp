// Multi-head attention: project queries, keys and values, split them into
// heads that attend independently, merge the heads, project the result.
// Chapter 6 (docs/06-multihead-attention.md); chapter 9 (docs/09-decoding.md)
// adds the KV cache for decoding one token at a time; chapter 12
// (docs/12-scaling-attention.md) the choice of tiled or sliding-window
// attention and the ring-buffer cache of a sliding window.
#pragma once

#include <memory>

#include "attend/nn.hpp"
#include "attend/tiled_attention.hpp"

namespace attend::nn {

// (B, T, C) -> (B, H, T, C/H): head h gets channels [h*C/H, (h+1)*C/H).
Tensor split_heads(const Tensor& x, int64_t heads);
// (B, H, T, D) -> (B, T, H*D): the inverse of split_heads.
Tensor merge_heads(const Tensor& x);


// The keys and values of the positions seen so far, kept between decoding
// steps (chapter 9). Preallocated for `capacity` positions; each step writes
// the new positions' keys and values after the `length` already there, so
// nothing is ever recomputed or moved. Rows are sentences (or beams).
// Chapter 12: a ring cache (for sliding-window attention) keeps only the last
// `capacity` positions: position p goes to slot p % capacity, overwriting
// position p - capacity, which the window no longer sees.
struct KVCache {
  Tensor keys, values;  // (B, H, capacity, D); slots [0, length) are filled
  int64_t length = 0;     // filled slots
  int64_t positions = 0;  // positions appended so far (= length, unless a ring has wrapped)
  bool ring = false;

  KVCache() = default;
  // Zeros on `device` (chapter 11: decoding on the GPU keeps its cache there).
  KVCache(int64_t batch, int64_t heads, int64_t capacity, int64_t head_dim, bool ring = false,
          Device device = Device::cpu);

  int64_t capacity() const { return keys.defined() ? keys.size(2) : 0; }
  // new_keys, new_values: (B, H, T, D) -> written at positions [positions, positions + T):
  // slots [length, length + T), or in a ring slot p % capacity for position p.
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
// Chapter 12: `attention` picks how the heads attend (reference, tiled or
// window:W; tiled_attention.hpp). Asking for the weights (the `weights`
// argument or record_weights) always takes the reference, the only one that
// makes the (Tq, Tk) weights: they are a picture, not a training path.
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t d_model, int64_t heads, float dropout, Generator& gen,
                     AttentionKind attention = AttentionKind());

  // query: (B, Tq, C), key and value: (B, Tk, C) -> (B, Tq, C).
  // mask: a chapter 5 tensor mask broadcastable to (B, H, Tq, Tk), nonzero =
  // blocked (attention.hpp), or an AttentionMask of rules (chapter 12). With
  // window:W, the window is added to the mask here (symmetric unless the
  // mask is causal).
  // If `weights` is given it receives the attention weights (B, H, Tq, Tk).
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const AttentionMask& mask = AttentionMask(), Tensor* weights = nullptr);

  // The part of forward after the key and value projections, shared by every
  // way of calling it: project the queries, attend, merge heads, project out.
  // query: (B, Tq, C); k, v: (B, H, Tk, D) already projected and split
  // (views are fine) -> (B, Tq, C). mask and weights as in forward, except
  // that no window is added: the mask is used as given.
  Tensor attend_to(const Tensor& query, const Tensor& k, const Tensor& v, const AttentionMask& mask = AttentionMask(),
                   Tensor* weights = nullptr);

  // Chapter 9: x (B, T, C) -> its keys and values, split into heads, in a
  // cache of exactly T positions. For cross-attention: the encoder output's
  // keys and values, computed once per source sentence.
  KVCache cache_keys_values(const Tensor& x);

  // Chapter 9: causal self-attention for new positions only. x: (B, Tn, C),
  // the positions [cache.positions, cache.positions + Tn) -> (B, Tn, C). Their
  // keys and values are appended to the cache, then their queries attend to
  // every cached position up to their own. Gives what forward(x_all, x_all,
  // x_all, causal_mask) gives at those positions, without recomputing the
  // others. With a ring cache (chapter 12, window:W with capacity W + 1) the
  // positions go one at a time: each attends to the whole ring, which then
  // holds exactly its window.
  Tensor forward_cached(const Tensor& x, KVCache& cache, Tensor* weights = nullptr);

  int64_t d_model, heads;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
  std::shared_ptr<Dropout> attention_dropout;  // on the attention weights
  AttentionKind attention;                     // chapter 12

  // Chapter 9: when true, every call keeps its attention weights (B, H, Tq, Tk)
  // in last_weights, so pictures can be drawn after a forward pass.
  bool record_weights = false;
  Tensor last_weights;
};

}  // namespace attend::nn
