// Tiled attention with an online softmax (FlashAttention's idea on the CPU),
// forward and backward, with causal, padding and sliding-window masks.
// Chapter 12 (docs/12-scaling-attention.md). The reference is chapter 5's
// scaled_dot_product_attention (src/nn/attention.cpp): the tests compare the two.
//
// Why it is faster and smaller than the reference: the reference writes the
// whole (Tq, Tk) score matrix, reads it back for the softmax, writes the
// weights, and reads them again for the product with v: four passes over
// Tq * Tk floats that do not fit in cache once T is in the thousands (T =
// 4096: 64 MiB per head). Here a (64, 64) tile of scores (16 KiB) is made,
// used and forgotten while it sits in the L1 cache; memory holds only the
// output and one number per query row. With a causal mask or a window the
// tiles that are entirely masked are not computed at all.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attend/attention_kernels.hpp"
#include "attend/kernels.hpp"
#include "instruction_sets.hpp"

namespace attend::kernels {

namespace {

using namespace detail;  // instruction_sets.hpp

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Range {
  int64_t begin, end;  // [begin, end)
};

// The keys that some query at positions [first, last] may see. Every rule's
// lowest and highest visible key grow with the position, so the union is one
// range: from the first query's lowest to the last query's highest.
Range visible_keys(const AttentionMasking& m, int64_t keys, int64_t first, int64_t last) {
  int64_t begin = 0, end = keys;
  if (m.window >= 0) begin = std::max<int64_t>(begin, first - m.window);
  if (m.causal) {
    end = std::min(end, last + 1);
  } else if (m.window >= 0) {
    end = std::min(end, last + m.window + 1);
  }
  return {begin, std::max(begin, end)};
}

// The queries (indices, not positions) that may see some key in [j0, j1):
// the same monotonicity read the other way.
Range visible_queries(const AttentionMasking& m, int64_t queries, int64_t j0, int64_t j1) {
  int64_t first = 0, last = queries - 1;  // as indices
  if (m.causal) {
    first = std::max(first, j0 - m.query_offset);  // position >= j0
  } else if (m.window >= 0) {
    first = std::max(first, j0 - m.window - m.query_offset);  // position + window >= j0
  }
  if (m.window >= 0) last = std::min(last, j1 - 1 + m.window - m.query_offset);  // position - window <= j1 - 1
  return {first, std::max(first, last + 1)};
}

// The loops below are templates on kFma, compiled twice (instruction_sets.hpp):
// for the baseline instruction set and for AVX2 + FMA, picked at run time.
// Every helper is ATTEND_INLINE so that it is compiled into each version.

// c (rows, cols) = a (rows, width) @ b (cols, width)^T; a and b rows are
// `a_stride` / `b_stride` apart. b is first transposed into bt (width, cols)
// so that the innermost loop runs along a row of c and a row of bt, both
// contiguous: it vectorizes without reordering any sum (each c[r][c] is
// summed over e in order, so the bits do not depend on the vector width).
template <bool kFma>
ATTEND_INLINE void block_times_transposed(const float* a, int64_t a_stride, const float* b, int64_t b_stride,
                                          int64_t width, int64_t rows, int64_t cols, float* bt, float* c) {
  for (int64_t col = 0; col < cols; ++col) {
    for (int64_t e = 0; e < width; ++e) bt[e * cols + col] = b[col * b_stride + e];
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* c_row = c + r * cols;
    std::fill(c_row, c_row + cols, 0.0f);
    const float* a_row = a + r * a_stride;
    for (int64_t e = 0; e < width; ++e) {
      const float a_re = a_row[e];
      const float* bt_row = bt + e * cols;
      for (int64_t col = 0; col < cols; ++col) c_row[col] = multiply_add<kFma>(a_re, bt_row[col], c_row[col]);
    }
  }
}

// y[0..n) += alpha * x[0..n)
template <bool kFma>
ATTEND_INLINE void add_scaled(float* y, float alpha, const float* x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) y[e] = multiply_add<kFma>(alpha, x[e], y[e]);
}

// Everything one (batch, head) pair needs: its rows of q, k, v and its masks.
struct Head {
  const float *q, *k, *v;
  int64_t q_stride, k_stride, v_stride;
  const float* blocked;   // (Tk) padding flags of this batch entry, or null
  uint64_t first_weight;  // number of weight (b, h, 0, 0) in (B, H, Tq, Tk) order
};

// The whole problem, as the kernels were called.
struct Problem {
  HeadRows q, k, v;
  AttentionSizes n;
  AttentionMasking m;
  AttentionDropout dropout;
  AttentionTiles tiles;
  float scale;  // 1 / sqrt(D)

  Head head(int64_t bh) const {
    const int64_t b = bh / n.heads, h = bh % n.heads;
    return {q.data + b * q.batch_stride + h * q.head_stride,
            k.data + b * k.batch_stride + h * k.head_stride,
            v.data + b * v.batch_stride + h * v.head_stride,
            q.row_stride,
            k.row_stride,
            v.row_stride,
            m.key_blocked ? m.key_blocked + b * m.key_blocked_stride : nullptr,
            static_cast<uint64_t>(bh * n.queries) * static_cast<uint64_t>(n.keys)};
  }
  float dropout_scale(const Head& hd, int64_t i, int64_t j) const {
    return attention_dropout_scale(dropout, hd.first_weight + static_cast<uint64_t>(i * n.keys + j));
  }
};

// One thread's scratch: a tile of scores, of d_out v^T and of dropped-out
// weights, a transposed tile of k or v, and per query row of a block the
// running max, the running sum and the unnormalised output.
struct Scratch {
  std::vector<float> s, dp, z, bt, row_max, row_sum, acc;
  explicit Scratch(const Problem& p) {
    const int64_t QB = p.tiles.query_block, KB = p.tiles.key_block;
    s.resize(static_cast<size_t>(QB * KB));
    dp.resize(s.size());
    z.resize(s.size());
    bt.resize(static_cast<size_t>(std::max(p.n.head_dim, p.n.value_dim) * KB));
    row_max.resize(static_cast<size_t>(QB));
    row_sum.resize(static_cast<size_t>(QB));
    acc.resize(static_cast<size_t>(QB * p.n.value_dim));
  }
};

// s (rows, cols) = the scaled scores of queries [i0, i0 + rows) against keys
// [j0, j0 + cols), -inf where the mask hides the key. The forward and both
// backward passes call exactly this, so the recomputed scores are the same
// bits as the forward's.
template <bool kFma>
ATTEND_INLINE void score_tile(const Problem& p, const Head& hd, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
                              float* bt, float* s) {
  block_times_transposed<kFma>(hd.q + i0 * hd.q_stride, hd.q_stride, hd.k + j0 * hd.k_stride, hd.k_stride,
                               p.n.head_dim, rows, cols, bt, s);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t position = p.m.query_offset + i0 + r;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t j = j0 + c;
      const bool hidden = !query_sees_key(p.m, position, j) || (hd.blocked && hd.blocked[j] != 0.0f);
      s[r * cols + c] = hidden ? kNegInf : s[r * cols + c] * p.scale;
    }
  }
}

// --- forward: one (batch, head, query block) -------------------------------------

template <bool kFma>
ATTEND_INLINE void forward_task(const Problem& p, float* out, float* log_sum_exp, Scratch& w, int64_t task) {
  const int64_t QB = p.tiles.query_block, KB = p.tiles.key_block, Dv = p.n.value_dim;
  const int64_t query_blocks = (p.n.queries + QB - 1) / QB;
  const int64_t bh = task / query_blocks, i0 = (task % query_blocks) * QB;
  const int64_t rows = std::min(QB, p.n.queries - i0);
  const Head hd = p.head(bh);
  std::fill(w.row_max.begin(), w.row_max.end(), kNegInf);
  std::fill(w.row_sum.begin(), w.row_sum.end(), 0.0f);
  std::fill(w.acc.begin(), w.acc.end(), 0.0f);
  // Only the key tiles some query of this block can see (window, causal).
  const Range keys = visible_keys(p.m, p.n.keys, p.m.query_offset + i0, p.m.query_offset + i0 + rows - 1);
  for (int64_t j0 = keys.begin; j0 < keys.end; j0 += KB) {
    const int64_t cols = std::min(KB, keys.end - j0);
    score_tile<kFma>(p, hd, i0, rows, j0, cols, w.bt.data(), w.s.data());
    for (int64_t r = 0; r < rows; ++r) {
      const float* s_row = w.s.data() + r * cols;
      float tile_max = kNegInf;
      for (int64_t c = 0; c < cols; ++c) tile_max = std::max(tile_max, s_row[c]);
      const float new_max = std::max(w.row_max[r], tile_max);
      if (new_max == kNegInf) continue;  // no visible key yet for this row
      // The online softmax: what was summed with exp(s - old max) is
      // rescaled to exp(s - new max) by one factor (0 the first time).
      const float rescale = std::exp(w.row_max[r] - new_max);
      float* acc_row = w.acc.data() + r * Dv;
      if (rescale != 1.0f) {
        w.row_sum[r] *= rescale;
        for (int64_t e = 0; e < Dv; ++e) acc_row[e] *= rescale;
      }
      for (int64_t c = 0; c < cols; ++c) {
        float weight = std::exp(s_row[c] - new_max);  // 0 for a hidden key
        w.row_sum[r] += weight;                        // the softmax's denominator: no dropout
        if (p.dropout.p > 0.0f && weight != 0.0f) weight *= p.dropout_scale(hd, i0 + r, j0 + c);
        if (weight != 0.0f) add_scaled<kFma>(acc_row, weight, hd.v + (j0 + c) * hd.v_stride, Dv);
      }
      w.row_max[r] = new_max;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = bh * p.n.queries + i0 + r;
    float* o = out + row * Dv;
    if (w.row_sum[r] == 0.0f) {  // a query that sees no key: zeros, as chapter 5 gives
      std::fill(o, o + Dv, 0.0f);
      log_sum_exp[row] = kNegInf;
      continue;
    }
    const float inv = 1.0f / w.row_sum[r];
    for (int64_t e = 0; e < Dv; ++e) o[e] = w.acc[static_cast<size_t>(r * Dv + e)] * inv;
    log_sum_exp[row] = w.row_max[r] + std::log(w.row_sum[r]);
  }
}

// --- backward ------------------------------------------------------------------
//
// With s the scaled scores, p = softmax(s) row by row, z = p * dropout mask
// and out = z v:
//   dv = z^T d_out                       dz = d_out v^T,  dp = dz * mask
//   ds_ij = p_ij (dp_ij - delta_i), delta_i = sum_j p_ij dp_ij = d_out_i . out_i
//   dq = scale * ds k,                   dk = scale * ds^T q
// p_ij is rebuilt as exp(s_ij - log_sum_exp_i) from a recomputed tile of s.

struct Gradients {
  const float* log_sum_exp;
  const float* d_out;
  const float* delta;  // (B, H, Tq): d_out_i . out_i
  float *dq, *dk, *dv;
};

// For one tile: s (the scores) becomes ds = p (dp * mask - delta), from
// dp = d_out v^T in w.dp, and w.z receives z = p * mask (for dv). Rows that
// see nothing give ds = z = 0.
template <bool kFma>
ATTEND_INLINE void tile_gradients(const Problem& p, const Gradients& g, const Head& hd, int64_t bh, int64_t i0,
                                  int64_t rows, int64_t j0, int64_t cols, Scratch& w) {
  const int64_t Dv = p.n.value_dim;
  score_tile<kFma>(p, hd, i0, rows, j0, cols, w.bt.data(), w.s.data());
  block_times_transposed<kFma>(g.d_out + (bh * p.n.queries + i0) * Dv, Dv, hd.v + j0 * hd.v_stride, hd.v_stride, Dv,
                               rows, cols, w.bt.data(), w.dp.data());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = bh * p.n.queries + i0 + r;
    const float lse = g.log_sum_exp[row];
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t at = r * cols + c;
      const float weight = lse == kNegInf ? 0.0f : std::exp(w.s[at] - lse);
      const float keep = p.dropout.p > 0.0f && weight != 0.0f ? p.dropout_scale(hd, i0 + r, j0 + c) : 1.0f;
      w.z[at] = weight * keep;
      w.s[at] = weight * (w.dp[at] * keep - g.delta[row]);
    }
  }
}

// Pass 1: dk and dv of one (batch, head, key block), summed over the query tiles that see it.
template <bool kFma>
ATTEND_INLINE void backward_key_task(const Problem& p, const Gradients& g, Scratch& w, int64_t task) {
  const int64_t QB = p.tiles.query_block, KB = p.tiles.key_block, D = p.n.head_dim, Dv = p.n.value_dim;
  const int64_t key_blocks = (p.n.keys + KB - 1) / KB;
  const int64_t bh = task / key_blocks, j0 = (task % key_blocks) * KB;
  const int64_t cols = std::min(KB, p.n.keys - j0);
  const Head hd = p.head(bh);
  float* dk_tile = g.dk + (bh * p.n.keys + j0) * D;
  float* dv_tile = g.dv + (bh * p.n.keys + j0) * Dv;
  std::fill(dk_tile, dk_tile + cols * D, 0.0f);
  std::fill(dv_tile, dv_tile + cols * Dv, 0.0f);
  const Range queries = visible_queries(p.m, p.n.queries, j0, j0 + cols);
  for (int64_t i0 = queries.begin; i0 < queries.end; i0 += QB) {
    const int64_t rows = std::min(QB, queries.end - i0);
    tile_gradients<kFma>(p, g, hd, bh, i0, rows, j0, cols, w);
    const float* d_out_rows = g.d_out + (bh * p.n.queries + i0) * Dv;
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t at = r * cols + c;
        if (w.z[at] != 0.0f) add_scaled<kFma>(dv_tile + c * Dv, w.z[at], d_out_rows + r * Dv, Dv);
        if (w.s[at] != 0.0f) add_scaled<kFma>(dk_tile + c * D, p.scale * w.s[at], hd.q + (i0 + r) * hd.q_stride, D);
      }
    }
  }
}

// Pass 2: dq of one (batch, head, query block), summed over the key tiles it sees.
template <bool kFma>
ATTEND_INLINE void backward_query_task(const Problem& p, const Gradients& g, Scratch& w, int64_t task) {
  const int64_t QB = p.tiles.query_block, KB = p.tiles.key_block, D = p.n.head_dim;
  const int64_t query_blocks = (p.n.queries + QB - 1) / QB;
  const int64_t bh = task / query_blocks, i0 = (task % query_blocks) * QB;
  const int64_t rows = std::min(QB, p.n.queries - i0);
  const Head hd = p.head(bh);
  float* dq_tile = g.dq + (bh * p.n.queries + i0) * D;
  std::fill(dq_tile, dq_tile + rows * D, 0.0f);
  const Range keys = visible_keys(p.m, p.n.keys, p.m.query_offset + i0, p.m.query_offset + i0 + rows - 1);
  for (int64_t j0 = keys.begin; j0 < keys.end; j0 += KB) {
    const int64_t cols = std::min(KB, keys.end - j0);
    tile_gradients<kFma>(p, g, hd, bh, i0, rows, j0, cols, w);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float ds = w.s[static_cast<size_t>(r * cols + c)];
        if (ds != 0.0f) add_scaled<kFma>(dq_tile + r * D, p.scale * ds, hd.k + (j0 + c) * hd.k_stride, D);
      }
    }
  }
}

// --- the two compiled versions of each task, and the choice between them ------

void forward_task_portable(const Problem& p, float* out, float* lse, Scratch& w, int64_t task) {
  forward_task<kBaselineHasFma>(p, out, lse, w, task);
}
void backward_key_task_portable(const Problem& p, const Gradients& g, Scratch& w, int64_t task) {
  backward_key_task<kBaselineHasFma>(p, g, w, task);
}
void backward_query_task_portable(const Problem& p, const Gradients& g, Scratch& w, int64_t task) {
  backward_query_task<kBaselineHasFma>(p, g, w, task);
}
#ifdef ATTEND_HAVE_AVX2_KERNEL
ATTEND_TARGET_AVX2 void forward_task_avx2(const Problem& p, float* out, float* lse, Scratch& w, int64_t task) {
  forward_task<true>(p, out, lse, w, task);
}
ATTEND_TARGET_AVX2 void backward_key_task_avx2(const Problem& p, const Gradients& g, Scratch& w, int64_t task) {
  backward_key_task<true>(p, g, w, task);
}
ATTEND_TARGET_AVX2 void backward_query_task_avx2(const Problem& p, const Gradients& g, Scratch& w, int64_t task) {
  backward_query_task<true>(p, g, w, task);
}
#endif

using ForwardTask = void (*)(const Problem&, float*, float*, Scratch&, int64_t);
using BackwardTask = void (*)(const Problem&, const Gradients&, Scratch&, int64_t);

Problem make_problem(HeadRows q, HeadRows k, HeadRows v, const AttentionSizes& n, const AttentionMasking& m,
                     const AttentionDropout& dropout, const AttentionTiles& tiles) {
  return {q, k, v, n, m, dropout, tiles, 1.0f / std::sqrt(static_cast<float>(n.head_dim))};
}

}  // namespace

bool query_sees_key(const AttentionMasking& m, int64_t position, int64_t key) {
  if (m.causal && key > position) return false;
  if (m.window >= 0) {
    if (key < position - m.window) return false;
    if (!m.causal && key > position + m.window) return false;
  }
  return true;
}

float attention_dropout_scale(const AttentionDropout& dropout, uint64_t element) {
  const uint64_t state = dropout.generator_state + (element + 1) * kSplitMix64Step;
  const float u = uniform_from_bits(splitmix64_mix(state));
  return u >= dropout.p ? (dropout.p < 1.0f ? 1.0f / (1.0f - dropout.p) : 0.0f) : 0.0f;
}

void attention_forward_tiled(HeadRows q, HeadRows k, HeadRows v, float* out, float* log_sum_exp,
                             const AttentionSizes& n, const AttentionMasking& m,
                             const AttentionDropout& dropout, const AttentionTiles& tiles) {
  const Problem p = make_problem(q, k, v, n, m, dropout, tiles);
  ForwardTask task_fn = forward_task_portable;
#ifdef ATTEND_HAVE_AVX2_KERNEL
  if (use_avx2_kernels()) task_fn = forward_task_avx2;
#endif
  const int64_t tasks = n.batch * n.heads * ((n.queries + tiles.query_block - 1) / tiles.query_block);
#pragma omp parallel if (tasks > 1)
  {
    Scratch scratch(p);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) task_fn(p, out, log_sum_exp, scratch, task);
  }
}

void attention_backward_tiled(HeadRows q, HeadRows k, HeadRows v, const float* out,
                              const float* log_sum_exp, const float* d_out, float* dq, float* dk,
                              float* dv, const AttentionSizes& n, const AttentionMasking& m,
                              const AttentionDropout& dropout, const AttentionTiles& tiles) {
  const Problem p = make_problem(q, k, v, n, m, dropout, tiles);
  const int64_t rows = n.batch * n.heads * n.queries, Dv = n.value_dim;
  // delta_i = d_out_i . out_i, one number per query row.
  std::vector<float> delta(static_cast<size_t>(rows));
#pragma omp parallel for if (rows * Dv >= (1 << 15))
  for (int64_t row = 0; row < rows; ++row) {
    float total = 0.0f;
    for (int64_t e = 0; e < Dv; ++e) total += d_out[row * Dv + e] * out[row * Dv + e];
    delta[static_cast<size_t>(row)] = total;
  }
  const Gradients g{log_sum_exp, d_out, delta.data(), dq, dk, dv};
  BackwardTask key_fn = backward_key_task_portable, query_fn = backward_query_task_portable;
#ifdef ATTEND_HAVE_AVX2_KERNEL
  if (use_avx2_kernels()) {
    key_fn = backward_key_task_avx2;
    query_fn = backward_query_task_avx2;
  }
#endif
  const int64_t BH = n.batch * n.heads;
  const int64_t key_tasks = BH * ((n.keys + tiles.key_block - 1) / tiles.key_block);
  const int64_t query_tasks = BH * ((n.queries + tiles.query_block - 1) / tiles.query_block);
#pragma omp parallel if (key_tasks > 1 || query_tasks > 1)
  {
    Scratch scratch(p);
    // Pass 1 (dk, dv by key tile), then pass 2 (dq by query tile): no two
    // tasks write the same element.
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < key_tasks; ++task) key_fn(p, g, scratch, task);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < query_tasks; ++task) query_fn(p, g, scratch, task);
  }
}

}  // namespace attend::kernels
