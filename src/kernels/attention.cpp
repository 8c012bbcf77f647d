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

namespace attend::kernels {

namespace {

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

// c (rows, cols) = a (rows, width) @ b (cols, width)^T; a and b rows are
// `a_stride` / `b_stride` apart. b is first transposed into bt (width, cols)
// so that the innermost loop runs along a row of c and a row of bt, both
// contiguous: it vectorizes without reordering any sum (each c[r][c] is
// summed over e in order, so the bits do not depend on the vector width).
void block_times_transposed(const float* a, int64_t a_stride, const float* b, int64_t b_stride,
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
      for (int64_t col = 0; col < cols; ++col) c_row[col] += a_re * bt_row[col];
    }
  }
}

// y[0..n) += alpha * x[0..n)
void add_scaled(float* y, float alpha, const float* x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) y[e] += alpha * x[e];
}

// Everything one (batch, head) pair needs: its rows of q, k, v and its masks.
struct Head {
  const float *q, *k, *v;
  int64_t q_stride, k_stride, v_stride;
  const float* blocked;   // (Tk) padding flags of this batch entry, or null
  uint64_t first_weight;  // number of weight (b, h, 0, 0) in (B, H, Tq, Tk) order
};

Head head_at(const HeadRows& q, const HeadRows& k, const HeadRows& v, const AttentionSizes& n,
             const AttentionMasking& m, int64_t b, int64_t h) {
  return {q.data + b * q.batch_stride + h * q.head_stride,
          k.data + b * k.batch_stride + h * k.head_stride,
          v.data + b * v.batch_stride + h * v.head_stride,
          q.row_stride,
          k.row_stride,
          v.row_stride,
          m.key_blocked ? m.key_blocked + b * m.key_blocked_stride : nullptr,
          static_cast<uint64_t>((b * n.heads + h) * n.queries) * static_cast<uint64_t>(n.keys)};
}

// s (rows, cols) = the scaled scores of queries [i0, i0 + rows) against keys
// [j0, j0 + cols), -inf where the mask hides the key. The forward and both
// backward passes call exactly this, so the recomputed scores are the same
// bits as the forward's.
void score_tile(const Head& hd, const AttentionSizes& n, const AttentionMasking& m, float scale,
                int64_t i0, int64_t rows, int64_t j0, int64_t cols, float* bt, float* s) {
  block_times_transposed(hd.q + i0 * hd.q_stride, hd.q_stride, hd.k + j0 * hd.k_stride, hd.k_stride,
                         n.head_dim, rows, cols, bt, s);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t position = m.query_offset + i0 + r;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t j = j0 + c;
      const bool hidden = !query_sees_key(m, position, j) || (hd.blocked && hd.blocked[j] != 0.0f);
      s[r * cols + c] = hidden ? kNegInf : s[r * cols + c] * scale;
    }
  }
}

float dropout_scale_at(const AttentionDropout& d, const Head& hd, const AttentionSizes& n, int64_t i, int64_t j) {
  return attention_dropout_scale(d, hd.first_weight + static_cast<uint64_t>(i * n.keys + j));
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

// --- forward -------------------------------------------------------------------

void attention_forward_tiled(HeadRows q, HeadRows k, HeadRows v, float* out, float* log_sum_exp,
                             const AttentionSizes& n, const AttentionMasking& m,
                             const AttentionDropout& dropout, const AttentionTiles& tiles) {
  const int64_t QB = tiles.query_block, KB = tiles.key_block, D = n.head_dim, Dv = n.value_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t query_blocks = (n.queries + QB - 1) / QB;
  const int64_t tasks = n.batch * n.heads * query_blocks;
#pragma omp parallel if (tasks > 1)
  {
    // Per thread: one tile of scores, a transposed key tile, and per query
    // row of the block the running max, the running sum and the unnormalised output.
    std::vector<float> s(static_cast<size_t>(QB * KB)), bt(static_cast<size_t>(D * KB));
    std::vector<float> row_max(static_cast<size_t>(QB)), row_sum(static_cast<size_t>(QB));
    std::vector<float> acc(static_cast<size_t>(QB * Dv));
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / query_blocks, i0 = (task % query_blocks) * QB;
      const int64_t b = bh / n.heads, h = bh % n.heads;
      const int64_t rows = std::min(QB, n.queries - i0);
      const Head hd = head_at(q, k, v, n, m, b, h);
      std::fill(row_max.begin(), row_max.end(), kNegInf);
      std::fill(row_sum.begin(), row_sum.end(), 0.0f);
      std::fill(acc.begin(), acc.end(), 0.0f);
      // Only the key tiles some query of this block can see (window, causal).
      const Range keys = visible_keys(m, n.keys, m.query_offset + i0, m.query_offset + i0 + rows - 1);
      for (int64_t j0 = keys.begin; j0 < keys.end; j0 += KB) {
        const int64_t cols = std::min(KB, keys.end - j0);
        score_tile(hd, n, m, scale, i0, rows, j0, cols, bt.data(), s.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float* s_row = s.data() + r * cols;
          float tile_max = kNegInf;
          for (int64_t c = 0; c < cols; ++c) tile_max = std::max(tile_max, s_row[c]);
          const float new_max = std::max(row_max[r], tile_max);
          if (new_max == kNegInf) continue;  // no visible key yet for this row
          // The online softmax: what was summed with exp(s - old max) is
          // rescaled to exp(s - new max) by one factor (0 the first time).
          const float rescale = std::exp(row_max[r] - new_max);
          float* acc_row = acc.data() + r * Dv;
          if (rescale != 1.0f) {
            row_sum[r] *= rescale;
            for (int64_t e = 0; e < Dv; ++e) acc_row[e] *= rescale;
          }
          for (int64_t c = 0; c < cols; ++c) {
            float p = std::exp(s_row[c] - new_max);  // 0 for a hidden key
            row_sum[r] += p;                          // the softmax's denominator: no dropout
            if (dropout.p > 0.0f && p != 0.0f) p *= dropout_scale_at(dropout, hd, n, i0 + r, j0 + c);
            if (p != 0.0f) add_scaled(acc_row, p, hd.v + (j0 + c) * hd.v_stride, Dv);
          }
          row_max[r] = new_max;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = bh * n.queries + i0 + r;
        float* o = out + row * Dv;
        if (row_sum[r] == 0.0f) {  // a query that sees no key: zeros, as chapter 5 gives
          std::fill(o, o + Dv, 0.0f);
          log_sum_exp[row] = kNegInf;
          continue;
        }
        const float inv = 1.0f / row_sum[r];
        for (int64_t e = 0; e < Dv; ++e) o[e] = acc[static_cast<size_t>(r * Dv + e)] * inv;
        log_sum_exp[row] = row_max[r] + std::log(row_sum[r]);
      }
    }
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

void attention_backward_tiled(HeadRows q, HeadRows k, HeadRows v, const float* out,
                              const float* log_sum_exp, const float* d_out, float* dq, float* dk,
                              float* dv, const AttentionSizes& n, const AttentionMasking& m,
                              const AttentionDropout& dropout, const AttentionTiles& tiles) {
  const int64_t QB = tiles.query_block, KB = tiles.key_block, D = n.head_dim, Dv = n.value_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t BH = n.batch * n.heads;

  // delta_i = d_out_i . out_i, one number per query row.
  std::vector<float> delta(static_cast<size_t>(BH * n.queries));
#pragma omp parallel for if (BH * n.queries * Dv >= (1 << 15))
  for (int64_t row = 0; row < BH * n.queries; ++row) {
    float total = 0.0f;
    for (int64_t e = 0; e < Dv; ++e) total += d_out[row * Dv + e] * out[row * Dv + e];
    delta[static_cast<size_t>(row)] = total;
  }

  // ds for one tile, in place of s: ds_rc = p_rc (dp_rc - delta_r), where dp
  // comes in `dp` (= d_out v^T for the tile). Also returns z = p * mask in `z`
  // (for dv) when z is not null. Rows that see nothing give ds = z = 0.
  auto tile_gradients = [&](const Head& hd, int64_t bh, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
                            float* s, const float* dp, float* z) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = bh * n.queries + i0 + r;
      const float lse = log_sum_exp[row];
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t at = r * cols + c;
        const float p = lse == kNegInf ? 0.0f : std::exp(s[at] - lse);
        const float keep = dropout.p > 0.0f && p != 0.0f ? dropout_scale_at(dropout, hd, n, i0 + r, j0 + c) : 1.0f;
        if (z) z[at] = p * keep;
        s[at] = p * (dp[at] * keep - delta[static_cast<size_t>(row)]);
      }
    }
  };

  // Pass 1: dk and dv, one key tile per task, summed over the query tiles that see it.
  const int64_t key_blocks = (n.keys + KB - 1) / KB;
#pragma omp parallel if (BH * key_blocks > 1)
  {
    std::vector<float> s(static_cast<size_t>(QB * KB)), dp(static_cast<size_t>(QB * KB));
    std::vector<float> z(static_cast<size_t>(QB * KB)), bt(static_cast<size_t>(std::max(D, Dv) * KB));
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < BH * key_blocks; ++task) {
      const int64_t bh = task / key_blocks, j0 = (task % key_blocks) * KB;
      const int64_t cols = std::min(KB, n.keys - j0);
      const Head hd = head_at(q, k, v, n, m, bh / n.heads, bh % n.heads);
      float* dk_tile = dk + (bh * n.keys + j0) * D;
      float* dv_tile = dv + (bh * n.keys + j0) * Dv;
      std::fill(dk_tile, dk_tile + cols * D, 0.0f);
      std::fill(dv_tile, dv_tile + cols * Dv, 0.0f);
      const Range queries = visible_queries(m, n.queries, j0, j0 + cols);
      for (int64_t i0 = queries.begin; i0 < queries.end; i0 += QB) {
        const int64_t rows = std::min(QB, queries.end - i0);
        const float* d_out_rows = d_out + (bh * n.queries + i0) * Dv;
        score_tile(hd, n, m, scale, i0, rows, j0, cols, bt.data(), s.data());
        block_times_transposed(d_out_rows, Dv, hd.v + j0 * hd.v_stride, hd.v_stride, Dv, rows, cols, bt.data(),
                               dp.data());
        tile_gradients(hd, bh, i0, rows, j0, cols, s.data(), dp.data(), z.data());
        for (int64_t c = 0; c < cols; ++c) {
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t at = r * cols + c;
            if (z[at] != 0.0f) add_scaled(dv_tile + c * Dv, z[at], d_out_rows + r * Dv, Dv);
            if (s[at] != 0.0f) add_scaled(dk_tile + c * D, scale * s[at], hd.q + (i0 + r) * hd.q_stride, D);
          }
        }
      }
    }
  }

  // Pass 2: dq, one query tile per task, summed over the key tiles it sees.
  const int64_t query_blocks = (n.queries + QB - 1) / QB;
#pragma omp parallel if (BH * query_blocks > 1)
  {
    std::vector<float> s(static_cast<size_t>(QB * KB)), dp(static_cast<size_t>(QB * KB));
    std::vector<float> bt(static_cast<size_t>(std::max(D, Dv) * KB));
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < BH * query_blocks; ++task) {
      const int64_t bh = task / query_blocks, i0 = (task % query_blocks) * QB;
      const int64_t rows = std::min(QB, n.queries - i0);
      const Head hd = head_at(q, k, v, n, m, bh / n.heads, bh % n.heads);
      float* dq_tile = dq + (bh * n.queries + i0) * D;
      std::fill(dq_tile, dq_tile + rows * D, 0.0f);
      const float* d_out_rows = d_out + (bh * n.queries + i0) * Dv;
      const Range keys = visible_keys(m, n.keys, m.query_offset + i0, m.query_offset + i0 + rows - 1);
      for (int64_t j0 = keys.begin; j0 < keys.end; j0 += KB) {
        const int64_t cols = std::min(KB, keys.end - j0);
        score_tile(hd, n, m, scale, i0, rows, j0, cols, bt.data(), s.data());
        block_times_transposed(d_out_rows, Dv, hd.v + j0 * hd.v_stride, hd.v_stride, Dv, rows, cols, bt.data(),
                               dp.data());
        tile_gradients(hd, bh, i0, rows, j0, cols, s.data(), dp.data(), nullptr);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            const float ds = s[static_cast<size_t>(r * cols + c)];
            if (ds != 0.0f) add_scaled(dq_tile + r * D, scale * ds, hd.k + (j0 + c) * hd.k_stride, D);
          }
        }
      }
    }
  }
}

}  // namespace attend::kernels
