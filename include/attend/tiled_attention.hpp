// Attention that scales: the tiled (FlashAttention-style) attention op with
// its backward, masks described by rules instead of (Tq, Tk) tensors, and
// the choice a model makes between the reference, tiled and sliding-window
// attention. Chapter 12 (docs/12-scaling-attention.md); the loops are in
// src/kernels/attention.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "attend/attention_kernels.hpp"
#include "attend/random.hpp"
#include "attend/tensor.hpp"

namespace attend::nn {

// Which attention a model computes (TransformerConfig::attention).
//  - reference: chapter 5's scaled_dot_product_attention (stores (Tq, Tk) weights)
//  - tiled: the same values from tiled_attention (stores one number per query)
//  - window:W: tiled, and each query sees only keys within W positions: the
//    W before it and itself in the decoder (causal), W on each side in the
//    encoder. Cross-attention (decoder -> encoder) stays full (tiled).
struct AttentionKind {
  enum Type { Reference, Tiled, Window };
  Type type = Reference;
  int64_t window = 0;  // W, for Window

  std::string to_string() const;  // "reference", "tiled", "window:W"
  // The inverse of to_string; anything else is an Error naming the text.
  static AttentionKind parse(const std::string& text);
  bool operator==(const AttentionKind&) const = default;
};

// A mask given by its rules, so tiled attention can skip whole tiles and
// never builds a (Tq, Tk) tensor. Nonzero/true = blocked, as in chapter 5.
//  - dense: chapter 5's tensor mask, broadcastable to (..., Tq, Tk). A Tensor
//    converts to an AttentionMask implicitly, so every chapter 5-9 call still
//    works. tiled_attention accepts it only when it depends on nothing but
//    the batch and the key (a padding mask (B, 1, 1, Tk)).
//  - key_padding: (B, 1, 1, Tk) or (B, Tk), as padding_mask gives.
//  - causal, query_offset, window: as kernels::AttentionMasking.
struct AttentionMask {
  Tensor dense;
  Tensor key_padding;
  bool causal = false;
  int64_t query_offset = 0;
  int64_t window = -1;

  AttentionMask() = default;
  AttentionMask(const Tensor& dense_mask) : dense(dense_mask) {}  // implicit on purpose (chapter 5's masks)

  // Padding only: what the encoder and the cross-attention use.
  static AttentionMask padding(const Tensor& key_padding);
  // Causal (+ padding if defined): the decoder's self-attention.
  static AttentionMask causal_with_padding(const Tensor& key_padding, int64_t query_offset = 0);

  // The same mask as one tensor, for the reference: (Tq, Tk) for rules only,
  // (B, 1, 1, Tk) for padding only, (B, 1, Tq, Tk) for both; undefined when
  // nothing is masked. On the device of key_padding (else of dense; else
  // the CPU).
  Tensor to_dense(int64_t queries, int64_t keys) const;
};

struct TiledAttentionOptions {
  kernels::AttentionTiles tiles;  // block sizes (tests use small ones)
  // Dropout on the attention weights, drawing from `generator` exactly what
  // chapter 3's dropout() would draw on the (B, H, Tq, Tk) weights (and
  // leaving the generator where dropout() would), so a tiled model trains
  // with the same random masks as the reference.
  float dropout = 0.0f;
  Generator* generator = nullptr;
};

// softmax(q k^T / sqrt(D) with masked scores at -inf) v, computed tile by tile.
//   q: (B, H, Tq, D), k: (B, H, Tk, D), v: (B, H, Tk, Dv) -> (B, H, Tq, Dv)
// Any strides whose last dim is 1 are read in place (split_heads' views).
// Gives chapter 5's values up to float rounding (the tests check it), with
// memory O(T) instead of O(T^2). Records its backward (the recomputing
// kernel); that backward is not itself differentiable (no double backward).
// If `log_sum_exp` is given it receives the per-row log-sum-exp (B, H, Tq).
Tensor tiled_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionMask& mask = AttentionMask(),
                       const TiledAttentionOptions& options = TiledAttentionOptions(),
                       Tensor* log_sum_exp = nullptr);

}  // namespace attend::nn
