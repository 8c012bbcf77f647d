// The host side of the CUDA kernels behind the Transformer's other ops on the
// device: softmax along a dim, layer norm, dropout, cross-entropy, gathers
// and their scatter-add, masks, where, max. Included by attend/gpu_kernels.hpp;
// no CUDA type here. Chapter 11 (docs/11-cuda.md, "Tensors on the device").

// Every pointer is in device memory and points at element (0, 0, ...) of its
// operand. Each output element is written by one thread that reads or sums
// its inputs in a fixed order, the CPU loop's: no atomics, so the same bits
// on every run.
#pragma once

#include <cstdint>

#include "attend/attention_kernels.hpp"
#include "attend/elementwise_kernels.hpp"

namespace attend::kernels {

// --- softmax and log_softmax along a dim (src/kernels/softmax_along_dim.cu) ----------

enum class RowSoftmax { softmax, log_softmax };

// One thread per row along the dim. Row r starts at x + strided_offset(rows,
// x_strides, r) and steps by x_step (likewise in out): `rows` is x's shape
// with the softmax dim set to 1, n its size. softmax_row / log_softmax_row
// (attend/row_kernels.hpp) compute each row, as on the CPU.
void softmax_along_dim_device(RowSoftmax kind, const float* x, const DeviceShape& rows,
                              const DeviceStrides& x_strides, int64_t x_step, float* out,
                              const DeviceStrides& out_strides, int64_t out_step, int64_t n);
// dx from y (the forward's output) and its gradient g, all three contiguous
// (outer, n, inner) with the dim in the middle: one thread per row.
// softmax: dx_i = y_i (g_i - sum_j g_j y_j); log_softmax: dx_i = g_i - exp(y_i) sum_j g_j.
void softmax_backward_along_dim_device(RowSoftmax kind, const float* y, const float* g, float* dx,
                                       int64_t outer, int64_t n, int64_t inner);

// --- layer norm, dropout, cross-entropy (src/kernels/nn_functional.cu) ---------------

// x, out, normalized: (rows, C) contiguous; weight, bias: (C); inverse_std: (rows).
// One thread per row: the statistics, then the row.
void layer_norm_device(const float* x, const float* weight, const float* bias, int64_t rows,
                       int64_t C, float eps, float* out, float* normalized, float* inverse_std);
// g, normalized, dx: (rows, C); inverse_std: (rows); weight, dweight, dbias:
// (C). dx: one thread per row; dweight and dbias: one thread per column
// summing down the rows in order (no atomics).
void layer_norm_backward_device(const float* g, const float* normalized, const float* inverse_std,
                                const float* weight, int64_t rows, int64_t C, float* dx,
                                float* dweight, float* dbias);

// x, out: n values (contiguous); kept: n bytes, 1 where the element is kept.
// Thread i draws dropout_keeps(state, i, p) (attend/row_kernels.hpp): the
// CPU's mask for a generator at `state`.
void dropout_device(const float* x, int64_t n, uint64_t state, float p, float scale, uint8_t* kept,
                    float* out);
void dropout_backward_device(const float* g, const uint8_t* kept, int64_t n, float scale, float* dx);

// log_probs: (rows, C) contiguous, targets: (rows). row_loss[r] (double) =
// cross_entropy_row_loss of row r, 0 where targets[r] == ignore_index (one
// thread per row); then one thread adds them in row order: loss (one float)
// = their mean over the rows not ignored (0 if none), counted (one int64) =
// how many.
void cross_entropy_device(const float* log_probs, const int64_t* targets, int64_t rows, int64_t C,
                          int64_t ignore_index, double label_smoothing, double* row_loss,
                          float* loss, int64_t* counted);
// grad (rows, C) = (softmax - q) * loss_grad / counted, q = (1-e) one_hot + e/C,
// 0 in the rows ignored; loss_grad and counted are one value each, on the device.
void cross_entropy_backward_device(const float* log_probs, const int64_t* targets, int64_t rows,
                                   int64_t C, int64_t ignore_index, double label_smoothing,
                                   const int64_t* counted, const float* loss_grad, float* grad);

// --- gathers, masks, where (src/kernels/indexing.cu) ---------------------------------

// The position of the first of the n ids (contiguous) outside [0, limit),
// ids equal to `allowed` excepted when has_allowed; -1 when all are in
// range, else *bad_id is that id. One thread walks the ids in order; its
// answer (16 bytes) is copied back to the host: the index checks are where
// these ops wait for the GPU.
int64_t find_index_out_of_range_device(const int64_t* ids, int64_t n, int64_t limit, bool has_allowed,
                                       int64_t allowed, int64_t* bad_id);
// out (contiguous, out_shape) = x with the entries along `dim` picked by
// index (index_count of them: out_shape.sizes[dim]), x read through
// x_strides: index_select, and embedding (dim 0 of the weight).
void index_select_device(const float* x, const DeviceStrides& x_strides, int dim, const int64_t* index,
                         float* out, const DeviceShape& out_shape);
// grad_x (contiguous, x_shape) = grad_out (contiguous, x_shape with dim
// `dim` of size index_count) added back to the positions the index picked:
// one thread per element of grad_x, adding the grad_out entries whose index
// is its position in index order (a row picked twice gets both); a position
// equal to skip_position (embedding's padding row) gets 0.
void index_select_backward_device(const float* grad_out, const int64_t* index, int64_t index_count,
                                  int dim, int64_t skip_position, float* grad_x,
                                  const DeviceShape& x_shape);
// flags (contiguous, shape) = 1 where (ids == value) is `equal`, else 0:
// padding masks (== pad) and an int64 mask's nonzero entries (!= 0).
void index_flags_device(const int64_t* ids, const DeviceStrides& ids_strides, int64_t value, bool equal,
                        float* flags, const DeviceShape& shape);
// blocked (queries, keys) = 1 where query i (at position query_offset + i)
// may not see key j under the causal and window rules of `masking`
// (query_sees_key, attend/attention_kernels.hpp), else 0.
void attention_rules_device(const AttentionMasking& masking, int64_t queries, int64_t keys, float* blocked);
// out (contiguous, shape) = condition != 0 ? a : b, each read through its strides.
void where_device(const float* condition, const DeviceStrides& condition_strides, const float* a,
                  const DeviceStrides& a_strides, const float* b, const DeviceStrides& b_strides,
                  float* out, const DeviceShape& shape);

// --- the first maximum of each row (src/kernels/reduction.cu) ------------------------

// x: (rows, R) contiguous, R >= 1. positions[r] = the first k with x[r][k] the
// largest (first_max_position); values[r] = that value, unless values is
// null. One thread per row.
void max_rows_device(const float* x, int64_t rows, int64_t R, float* values, int64_t* positions);
// grad_x (rows, R) = g[r] at (r, positions[r]), 0 elsewhere: max's backward.
void max_rows_backward_device(const float* g, const int64_t* positions, int64_t rows, int64_t R,
                              float* grad_x);

}  // namespace attend::kernels
