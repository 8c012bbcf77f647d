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
#include "attend/error.hpp"  // (for the exercises: a learner's copy throws attend::Error here)
#include "attend/kernels.hpp"
#include "attend/parallel.hpp"
#include "attend/softmax_exp.hpp"
#include "instruction_sets.hpp"

namespace attend::kernels {

namespace {

using namespace detail;  // instruction_sets.hpp

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The queries (indices, not positions) that may see some key in [j0, j1):
// visible_keys' monotonicity (attention_kernels.hpp) read the other way.
KeyRange visible_queries(const AttentionMasking& m, int64_t queries, int64_t j0, int64_t j1) {
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

// c (M, N) += a (M, K) @ b (K, N), all row-major with row strides lda, ldb,
// ldc: the products inside a tile (q k^T, p v and the backward's four). Why
// this is fast: a 4 x 16 block of c stays in registers (8 AVX2 vectors) for
// the whole k loop, so each step loads 16 floats of b and 4 of a for 64
// multiply-adds, where a row at a time would load and store c at every step.
// Every c[i][j] is summed over k in order, in the full blocks and at the
// edges alike, so the bits do not depend on where a block starts.
constexpr int64_t kTileRows = 4, kTileCols = 16;

template <bool kFma>
ATTEND_INLINE void small_matmul(const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                                float* __restrict c, int64_t ldc, int64_t M, int64_t K, int64_t N) {
  for (int64_t i0 = 0; i0 < M; i0 += kTileRows) {
    for (int64_t j0 = 0; j0 < N; j0 += kTileCols) {
      float* c_block = c + i0 * ldc + j0;
      if (i0 + kTileRows <= M && j0 + kTileCols <= N) {
        float acc[kTileRows][kTileCols];
        for (int64_t i = 0; i < kTileRows; ++i) {
          for (int64_t j = 0; j < kTileCols; ++j) acc[i][j] = c_block[i * ldc + j];
        }
        for (int64_t k = 0; k < K; ++k) {
          const float* b_row = b + k * ldb + j0;
#pragma GCC unroll 4
          for (int64_t i = 0; i < kTileRows; ++i) {
            const float a_ik = a[(i0 + i) * lda + k];
#pragma omp simd
            for (int64_t j = 0; j < kTileCols; ++j) acc[i][j] = multiply_add<kFma>(a_ik, b_row[j], acc[i][j]);
          }
        }
        for (int64_t i = 0; i < kTileRows; ++i) {
          for (int64_t j = 0; j < kTileCols; ++j) c_block[i * ldc + j] = acc[i][j];
        }
      } else {  // the edges: the same sums, one row at a time
        const int64_t rows = std::min(kTileRows, M - i0), cols = std::min(kTileCols, N - j0);
        for (int64_t i = 0; i < rows; ++i) {
          float* c_row = c_block + i * ldc;
          for (int64_t k = 0; k < K; ++k) {
            const float a_ik = a[(i0 + i) * lda + k];
            const float* b_row = b + k * ldb + j0;
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) c_row[j] = multiply_add<kFma>(a_ik, b_row[j], c_row[j]);
          }
        }
      }
    }
  }
}

// out (cols, rows) = in (rows, cols)^T, in with row stride ld_in.
ATTEND_INLINE void transpose(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * ld_in + c];
  }
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

// One thread's scratch: tiles of scores, of d_out v^T, of dropped-out
// weights and of transposes, a transposed tile of k or v, and per query row
// of a block the running max, the running sum and the unnormalised output.
struct Scratch {
  std::vector<float> s, dp, z, zt, dst, bt, row_max, row_sum, acc;
  explicit Scratch(const Problem& p) {
    const int64_t QB = p.tiles.query_block, KB = p.tiles.key_block;
    s.resize(static_cast<size_t>(QB * KB));
    dp.resize(s.size());
    z.resize(s.size());
    zt.resize(s.size());
    dst.resize(s.size());
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
  // s = q_rows (rows, D) @ k_tile^T (D, cols): k's tile is transposed first
  // so that small_matmul reads both operands along rows.
  transpose(hd.k + j0 * hd.k_stride, hd.k_stride, cols, p.n.head_dim, bt);
  std::fill(s, s + rows * cols, 0.0f);
  small_matmul<kFma>(hd.q + i0 * hd.q_stride, hd.q_stride, bt, cols, s, cols, rows, p.n.head_dim, cols);
  // Every rule's visible keys grow with the position, so a tile is entirely
  // visible when its first query sees its last key and its last query its first.
  const int64_t first = p.m.query_offset + i0, last = first + rows - 1;
  if (!hd.blocked && query_sees_key(p.m, first, j0 + cols - 1) && query_sees_key(p.m, last, j0)) {
#pragma omp simd
    for (int64_t at = 0; at < rows * cols; ++at) s[at] *= p.scale;
    return;
  }
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
  const KeyRange keys = visible_keys(p.m, p.n.keys, p.m.query_offset + i0, p.m.query_offset + i0 + rows - 1);
  for (int64_t j0 = keys.begin; j0 < keys.end; j0 += KB) {
    const int64_t cols = std::min(KB, keys.end - j0);
    score_tile<kFma>(p, hd, i0, rows, j0, cols, w.bt.data(), w.s.data());
    for (int64_t r = 0; r < rows; ++r) {
      float* s_row = w.s.data() + r * cols;
      float tile_max = kNegInf;
#pragma omp simd reduction(max : tile_max)
      for (int64_t c = 0; c < cols; ++c) tile_max = std::max(tile_max, s_row[c]);
      // exercise 12.1 begin: the online softmax: rescale row_sum and acc to the new max, add the tile's weights
      const float new_max = std::max(w.row_max[r], tile_max);
      if (new_max == kNegInf) {  // no visible key yet for this row
        std::fill(s_row, s_row + cols, 0.0f);
        continue;
      }
      // The online softmax: what was summed with exp(s - old max) is
      // rescaled to exp(s - new max) by one factor (0 the first time).
      const float rescale = std::exp(w.row_max[r] - new_max);
      float* acc_row = w.acc.data() + r * Dv;
      if (rescale != 1.0f) {
        w.row_sum[r] *= rescale;
        for (int64_t e = 0; e < Dv; ++e) acc_row[e] *= rescale;
      }
      // The tile's weights, in place of its scores, and their sum (the
      // softmax's denominator, before dropout). softmax_exp rather than
      // std::exp: one exp per score is most of this loop nest's work, and
      // softmax_exp runs 8 (AVX2) at once (include/attend/softmax_exp.hpp).
      float tile_sum = 0.0f;
#pragma omp simd reduction(+ : tile_sum)
      for (int64_t c = 0; c < cols; ++c) {
        s_row[c] = softmax_exp(s_row[c] - new_max);  // 0 for a hidden key
        tile_sum += s_row[c];
      }
      w.row_sum[r] += tile_sum;
      if (p.dropout.p > 0.0f) {
        for (int64_t c = 0; c < cols; ++c) {
          if (s_row[c] != 0.0f) s_row[c] *= p.dropout_scale(hd, i0 + r, j0 + c);
        }
      }
      w.row_max[r] = new_max;
      // exercise 12.1 end
    }
    // acc (rows, Dv) += weights (rows, cols) @ v_tile (cols, Dv)
    small_matmul<kFma>(w.s.data(), cols, hd.v + j0 * hd.v_stride, hd.v_stride, w.acc.data(), Dv, rows, cols, Dv);
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

// For one tile: s (the scores) becomes scale * ds, with
// ds = p (dp * mask - delta) and dp = d_out v^T (in w.dp), and w.z receives
// z = p * mask (for dv). Rows that see nothing give ds = z = 0.
template <bool kFma>
ATTEND_INLINE void tile_gradients(const Problem& p, const Gradients& g, const Head& hd, int64_t bh, int64_t i0,
                                  int64_t rows, int64_t j0, int64_t cols, Scratch& w) {
  const int64_t Dv = p.n.value_dim;
  score_tile<kFma>(p, hd, i0, rows, j0, cols, w.bt.data(), w.s.data());
  // dp = d_out_rows (rows, Dv) @ v_tile^T (Dv, cols)
  transpose(hd.v + j0 * hd.v_stride, hd.v_stride, cols, Dv, w.bt.data());
  std::fill(w.dp.begin(), w.dp.begin() + rows * cols, 0.0f);
  small_matmul<kFma>(g.d_out + (bh * p.n.queries + i0) * Dv, Dv, w.bt.data(), cols, w.dp.data(), cols, rows, Dv, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = bh * p.n.queries + i0 + r;
    const float lse = g.log_sum_exp[row], delta = g.delta[row];
    float* s_row = w.s.data() + r * cols;
    float* z_row = w.z.data() + r * cols;
    const float* dp_row = w.dp.data() + r * cols;
    if (lse == kNegInf) {  // the row sees no key
      std::fill(s_row, s_row + cols, 0.0f);
      std::fill(z_row, z_row + cols, 0.0f);
    } else if (p.dropout.p == 0.0f) {  // the common case, vectorized (softmax_exp, as in the forward)
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float weight = softmax_exp(s_row[c] - lse);
        z_row[c] = weight;
        s_row[c] = p.scale * (weight * (dp_row[c] - delta));
      }
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        const float weight = softmax_exp(s_row[c] - lse);
        const float keep = weight != 0.0f ? p.dropout_scale(hd, i0 + r, j0 + c) : 1.0f;
        z_row[c] = weight * keep;
        s_row[c] = p.scale * (weight * (dp_row[c] * keep - delta));
      }
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
  const KeyRange queries = visible_queries(p.m, p.n.queries, j0, j0 + cols);
  for (int64_t i0 = queries.begin; i0 < queries.end; i0 += QB) {
    const int64_t rows = std::min(QB, queries.end - i0);
    tile_gradients<kFma>(p, g, hd, bh, i0, rows, j0, cols, w);
    // dv_tile (cols, Dv) += z^T (cols, rows) @ d_out_rows (rows, Dv)
    // dk_tile (cols, D) += (scale ds)^T (cols, rows) @ q_rows (rows, D)
    transpose(w.z.data(), cols, rows, cols, w.zt.data());
    transpose(w.s.data(), cols, rows, cols, w.dst.data());
    small_matmul<kFma>(w.zt.data(), rows, g.d_out + (bh * p.n.queries + i0) * Dv, Dv, dv_tile, Dv, cols, rows, Dv);
    small_matmul<kFma>(w.dst.data(), rows, hd.q + i0 * hd.q_stride, hd.q_stride, dk_tile, D, cols, rows, D);
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
  const KeyRange keys = visible_keys(p.m, p.n.keys, p.m.query_offset + i0, p.m.query_offset + i0 + rows - 1);
  for (int64_t j0 = keys.begin; j0 < keys.end; j0 += KB) {
    const int64_t cols = std::min(KB, keys.end - j0);
    tile_gradients<kFma>(p, g, hd, bh, i0, rows, j0, cols, w);
    // dq_tile (rows, D) += (scale ds) (rows, cols) @ k_tile (cols, D)
    small_matmul<kFma>(w.s.data(), cols, hd.k + j0 * hd.k_stride, hd.k_stride, dq_tile, D, rows, cols, D);
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
  // Tasks differ in cost (a causal mask hides more of the early query
  // tiles), so several pieces per thread, each with its own scratch tiles.
  parallel_for_ranges(tasks, 4 * thread_count(), [&](int64_t first, int64_t last) {
    Scratch scratch(p);
    for (int64_t task = first; task < last; ++task) task_fn(p, out, log_sum_exp, scratch, task);
  });
}

void attention_backward_tiled(HeadRows q, HeadRows k, HeadRows v, const float* out,
                              const float* log_sum_exp, const float* d_out, float* dq, float* dk,
                              float* dv, const AttentionSizes& n, const AttentionMasking& m,
                              const AttentionDropout& dropout, const AttentionTiles& tiles) {
  const Problem p = make_problem(q, k, v, n, m, dropout, tiles);
  const int64_t rows = n.batch * n.heads * n.queries, Dv = n.value_dim;
  // delta_i = d_out_i . out_i, one number per query row.
  std::vector<float> delta(static_cast<size_t>(rows));
  parallel_for(rows, rows * Dv >= (1 << 15), [&](int64_t row) {
    float total = 0.0f;
    for (int64_t e = 0; e < Dv; ++e) total += d_out[row * Dv + e] * out[row * Dv + e];
    delta[static_cast<size_t>(row)] = total;
  });
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
  // Pass 1 (dk, dv by key tile), then pass 2 (dq by query tile): no two
  // tasks write the same element. Pieces as in the forward.
  parallel_for_ranges(key_tasks, 4 * thread_count(), [&](int64_t first, int64_t last) {
    Scratch scratch(p);
    for (int64_t task = first; task < last; ++task) key_fn(p, g, scratch, task);
  });
  parallel_for_ranges(query_tasks, 4 * thread_count(), [&](int64_t first, int64_t last) {
    Scratch scratch(p);
    for (int64_t task = first; task < last; ++task) query_fn(p, g, scratch, task);
  });
}

}  // namespace attend::kernels
