// The tiled attention forward as a CUDA kernel, chapter 11's style: one block
// per tile of queries, key and value tiles staged through shared memory, each
// query's running max, running sum and output in its thread's registers.
// Tested against attention_forward_tiled (attention.cpp beside it). Chapter 12
// (docs/12-scaling-attention.md); runs on a GPU (make CUDA=1) or the emulator.
#include "attend/attention_kernels.hpp"
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

constexpr int kQueryTile = 32;     // queries per block: one thread each
constexpr int kKeyTile = 32;       // keys per shared-memory tile
constexpr int kMaxHeadWidth = 128;  // D and Dv at most (registers per thread)

// Block (kQueryTile threads) x grid (query tiles, B * H). Thread t owns query
// i0 + t. For each tile of keys the block first copies the tile's keys and
// values into shared memory together (consecutive threads, consecutive
// floats: coalesced), then every thread scores its query against the tile
// and applies the online softmax to its own running max, sum and output,
// exactly as attention_forward_tiled does for a row. The (Tq, Tk) scores
// exist only one tile row at a time, in each thread's registers.
__global__ void attention_forward_kernel(HeadRows q, HeadRows k, HeadRows v, float* out, float* log_sum_exp,
                                         AttentionSizes n, AttentionMasking m) {
  __shared__ float k_tile[kKeyTile][kMaxHeadWidth];
  __shared__ float v_tile[kKeyTile][kMaxHeadWidth];
  const int t = static_cast<int>(threadIdx.x);
  const int64_t bh = blockIdx.y, b = bh / n.heads, h = bh % n.heads;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kQueryTile, i = i0 + t;
  const int64_t rows = n.queries - i0 < kQueryTile ? n.queries - i0 : kQueryTile;
  const bool has_query = i < n.queries;  // threads past the last query still help load tiles
  const float* q_row = q.data + b * q.batch_stride + h * q.head_stride + i * q.row_stride;
  const float* k_head = k.data + b * k.batch_stride + h * k.head_stride;
  const float* v_head = v.data + b * v.batch_stride + h * v.head_stride;
  const float* blocked = m.key_blocked ? m.key_blocked + b * m.key_blocked_stride : nullptr;
  const float scale = 1.0f / sqrtf(static_cast<float>(n.head_dim));
  const int64_t position = m.query_offset + i;

  float q_reg[kMaxHeadWidth], acc[kMaxHeadWidth];
  for (int64_t e = 0; e < n.head_dim; ++e) q_reg[e] = has_query ? q_row[e] : 0.0f;
  for (int64_t e = 0; e < n.value_dim; ++e) acc[e] = 0.0f;
  float row_max = -INFINITY, row_sum = 0.0f;

  const KeyRange keys = visible_keys(m, n.keys, m.query_offset + i0, m.query_offset + i0 + rows - 1);
  for (int64_t j0 = keys.begin; j0 < keys.end; j0 += kKeyTile) {
    const int64_t cols = keys.end - j0 < kKeyTile ? keys.end - j0 : kKeyTile;
    for (int64_t x = t; x < cols * n.head_dim; x += kQueryTile) {
      k_tile[x / n.head_dim][x % n.head_dim] = k_head[(j0 + x / n.head_dim) * k.row_stride + x % n.head_dim];
    }
    for (int64_t x = t; x < cols * n.value_dim; x += kQueryTile) {
      v_tile[x / n.value_dim][x % n.value_dim] = v_head[(j0 + x / n.value_dim) * v.row_stride + x % n.value_dim];
    }
    __syncthreads();  // the tiles are complete before anyone reads them
    if (has_query) {
      float s[kKeyTile];
      float tile_max = -INFINITY;
      for (int64_t c = 0; c < cols; ++c) {
        float dot = 0.0f;
        for (int64_t e = 0; e < n.head_dim; ++e) dot += q_reg[e] * k_tile[c][e];
        const bool hidden = !query_sees_key(m, position, j0 + c) || (blocked && blocked[j0 + c] != 0.0f);
        s[c] = hidden ? -INFINITY : dot * scale;
        tile_max = fmaxf(tile_max, s[c]);
      }
      // exercise 12.2 begin: the online softmax in one thread: rescale, then add the tile's weights and values
      const float new_max = fmaxf(row_max, tile_max);
      if (new_max != -INFINITY) {  // else: no visible key yet
        const float rescale = expf(row_max - new_max);  // 0 the first time
        row_sum *= rescale;
        for (int64_t e = 0; e < n.value_dim; ++e) acc[e] *= rescale;
        for (int64_t c = 0; c < cols; ++c) {
          const float weight = expf(s[c] - new_max);
          row_sum += weight;
          for (int64_t e = 0; e < n.value_dim; ++e) acc[e] += weight * v_tile[c][e];
        }
        row_max = new_max;
      }
      // exercise 12.2 end
    }
    __syncthreads();  // everyone has finished with the tiles before they are overwritten
  }
  if (!has_query) return;
  const int64_t row = bh * n.queries + i;
  const float inverse = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;  // a query that sees no key: zeros
  for (int64_t e = 0; e < n.value_dim; ++e) out[row * n.value_dim + e] = acc[e] * inverse;
  log_sum_exp[row] = row_sum > 0.0f ? row_max + logf(row_sum) : -INFINITY;
}

void attention_forward_device(HeadRows q, HeadRows k, HeadRows v, float* out, float* log_sum_exp,
                              const AttentionSizes& n, const AttentionMasking& masking) {
  const int64_t BH = n.batch * n.heads;
  if (n.batch < 0 || n.heads < 0 || n.queries < 0 || n.keys < 0 || n.head_dim < 1 || n.value_dim < 1 ||
      n.head_dim > kMaxHeadWidth || n.value_dim > kMaxHeadWidth || BH > 65535 ||
      (n.queries + kQueryTile - 1) / kQueryTile > 0x7fffffff) {
    throw Error("attention_forward_device: (B, H, Tq, Tk, D, Dv) = (" + std::to_string(n.batch) + ", " +
                std::to_string(n.heads) + ", " + std::to_string(n.queries) + ", " + std::to_string(n.keys) + ", " +
                std::to_string(n.head_dim) + ", " + std::to_string(n.value_dim) + ") is out of range: D and Dv in [1, " +
                std::to_string(kMaxHeadWidth) + "], B * H at most 65535");
  }
  if (BH * n.queries == 0) return;
  if (!q.data || !k.data || !v.data || !out || !log_sum_exp) throw Error("attention_forward_device: a null device pointer");
  const dim3 grid(static_cast<unsigned>((n.queries + kQueryTile - 1) / kQueryTile), static_cast<unsigned>(BH));
  ATTEND_LAUNCH(attention_forward_kernel, grid, dim3(kQueryTile), 0, q, k, v, out, log_sum_exp, n, masking);
}

}  // namespace attend::kernels
