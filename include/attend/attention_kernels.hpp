// Tiled ("FlashAttention-style") attention kernels: exact softmax(q k^T /
// sqrt(D)) v computed block by block with an online softmax, so the
// (Tq, Tk) score matrix is never stored, and its backward, which recomputes
// each block of scores from the saved log-sum-exp. Sliding-window attention
// is the same loops with the blocks outside the window skipped.
// Chapter 12 (docs/12-scaling-attention.md). Pointers and sizes only.
#pragma once

#include <cstdint>

#include "attend/host_device.hpp"

namespace attend::kernels {

// One operand of attention, (B, H, T, width): row t of head (b, h) starts at
// data + b * batch_stride + h * head_stride + t * row_stride, and its `width`
// floats are contiguous. A (B, T, H, D) tensor viewed as (B, H, T, D) (what
// split_heads gives) is read in place: strides (T*H*D, D, H*D).
struct HeadRows {
  const float* data;
  int64_t batch_stride, head_stride, row_stride;
};

struct AttentionSizes {
  int64_t batch = 1, heads = 1;
  int64_t queries = 0, keys = 0;   // Tq, Tk
  int64_t head_dim = 0;            // D, the width of q and k
  int64_t value_dim = 0;           // Dv, the width of v and of the output
};

// Which keys each query may see. Query i sits at position query_offset + i
// (a KV-cache step puts its new queries after the cached ones); key j at j.
//  - causal: only keys j <= position.
//  - window >= 0 (sliding window): with causal, the window keys before the
//    position and itself (position - window <= j <= position); without, a
//    symmetric band (|position - j| <= window), the encoder's variant.
//  - key_blocked (optional, (B, Tk) with batch stride key_blocked_stride):
//    nonzero = padding, nobody sees that key.
// A query that sees no key at all gets a zero output (and zero gradients),
// as chapter 5's attention gives.
struct AttentionMasking {
  bool causal = false;
  int64_t query_offset = 0;
  int64_t window = -1;  // < 0: no window
  const float* key_blocked = nullptr;
  int64_t key_blocked_stride = 0;
};

// Whether the query at `position` may see key `key` by the causal and window
// rules (padding aside). The one definition: the CPU and CUDA kernels and the
// dense masks built for the reference (nn::AttentionMask::to_dense) all ask it.
ATTEND_HOST_DEVICE inline bool query_sees_key(const AttentionMasking& m, int64_t position, int64_t key) {
  if (m.causal && key > position) return false;
  if (m.window >= 0) {
    if (key < position - m.window) return false;
    if (!m.causal && key > position + m.window) return false;
  }
  return true;
}

struct KeyRange {
  int64_t begin, end;  // [begin, end)
};

// The keys that some query at positions [first, last] may see. Every rule's
// lowest and highest visible key grow with the position, so the union is one
// range: from the first query's lowest to the last query's highest. Tiles
// outside it are skipped (that is what makes a window cost O(T W)).
ATTEND_HOST_DEVICE inline KeyRange visible_keys(const AttentionMasking& m, int64_t keys, int64_t first, int64_t last) {
  int64_t begin = 0, end = keys;
  if (m.window >= 0 && first - m.window > begin) begin = first - m.window;
  if (m.causal) {
    if (last + 1 < end) end = last + 1;
  } else if (m.window >= 0) {
    if (last + m.window + 1 < end) end = last + m.window + 1;
  }
  return {begin, end > begin ? end : begin};
}

// Dropout on the attention weights, drawn exactly as chapter 3's dropout()
// draws it on the (B, H, Tq, Tk) weights: weight number
// e = ((b * H + h) * Tq + i) * Tk + j is kept (and scaled by 1 / (1 - p)) when
// uniform number e + 1 of the SplitMix64 stream that starts at state
// `generator_state` is >= p. SplitMix64 is counter-based, so any element's
// draw is computed without drawing the ones before it.
struct AttentionDropout {
  float p = 0.0f;  // 0: no dropout
  uint64_t generator_state = 0;
};

// Block sizes: a (query_block, key_block) tile of scores lives in a small
// buffer (64 x 64 floats = 16 KiB, L1-sized) instead of the whole matrix.
struct AttentionTiles {
  int64_t query_block = 64;
  int64_t key_block = 64;
};

// The forward pass.
//   q: (B, H, Tq, D), k: (B, H, Tk, D), v: (B, H, Tk, Dv), read via HeadRows
//   out: (B, H, Tq, Dv) contiguous, written
//   log_sum_exp: (B, H, Tq) contiguous, written: log sum_j exp(s_ij) over the
//     keys query i sees (s = scaled scores), -inf for a query that sees none.
//     The backward needs only this per row to rebuild any weight:
//     p_ij = exp(s_ij - log_sum_exp_i).
// Threads take (batch, head, query block) triples; each is computed alone in
// a fixed order, so the bits do not depend on the number of threads.
void attention_forward_tiled(HeadRows q, HeadRows k, HeadRows v, float* out, float* log_sum_exp,
                             const AttentionSizes& sizes, const AttentionMasking& masking,
                             const AttentionDropout& dropout, const AttentionTiles& tiles);

// The backward pass: given d_out (dLoss/dOut, contiguous like out) and what
// the forward saved, writes dq (B, H, Tq, D), dk (B, H, Tk, D) and
// dv (B, H, Tk, Dv), all contiguous. Scores are recomputed block by block.
// Pass 1 takes (batch, head, key block) triples and sums dk, dv over the
// query blocks; pass 2 takes (batch, head, query block) triples and sums dq
// over the key blocks. No two threads ever add to the same element, so no
// atomics, and the same bits for any number of threads.
void attention_backward_tiled(HeadRows q, HeadRows k, HeadRows v, const float* out,
                              const float* log_sum_exp, const float* d_out, float* dq, float* dk,
                              float* dv, const AttentionSizes& sizes,
                              const AttentionMasking& masking, const AttentionDropout& dropout,
                              const AttentionTiles& tiles);

// The dropout decision for weight number `element` (see AttentionDropout):
// the scale 1 / (1 - p) when it is kept, else 0.
float attention_dropout_scale(const AttentionDropout& dropout, uint64_t element);

}  // namespace attend::kernels
