// Gathers and their scatter-add (deterministic: one thread per gradient
// element, adding in index order, no float atomics), the index range check,
// padding and attention-rule masks, and where, on the device. Chapter 11
// (docs/11-cuda.md, "Tensors on the device"); the CPU twins are in
// src/ops/indexing.cpp, src/nn/attention.cpp and src/nn/tiled_attention.cpp.
#include "attend/cuda_or_emulator.hpp"
#include "attend/device_allocator.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

constexpr unsigned kIndexingThreads = 256;

// One thread walks the ids in order and records the first bad one: the
// same answer as the CPU's loop, on every run.
__global__ void find_index_out_of_range_kernel(const int64_t* ids, int64_t n, int64_t limit, bool has_allowed,
                                               int64_t allowed, int64_t* answer) {
  if (global_thread_index() != 0) return;
  answer[0] = -1;
  answer[1] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    if (has_allowed && id == allowed) continue;
    if (id < 0 || id >= limit) {
      answer[0] = i;
      answer[1] = id;
      return;
    }
  }
}

// Output element i: its index digits over out_shape, the digit along `dim`
// replaced by the index entry it names, then x's strides.
__global__ void index_select_kernel(const float* x, DeviceStrides x_strides, int dim, const int64_t* index,
                                    float* out, DeviceShape out_shape, int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  int64_t rest = i, offset = 0;
  for (int d = out_shape.rank - 1; d >= 0; --d) {
    int64_t digit = rest % out_shape.sizes[d];
    rest /= out_shape.sizes[d];
    if (d == dim) digit = index[digit];
    offset += digit * x_strides.values[d];
  }
  out[i] = x[offset];
}

// grad_x element i sits at `position` along dim; grad_out (contiguous, dim
// of size index_count) holds its candidates at first + j * step for the j
// with index[j] == position, added in order of j from 0, as the CPU's
// scatter-add does. Reading every index per thread costs index_count steps
// instead of the atomics' one, and buys the same bits on every run.
__global__ void index_select_backward_kernel(const float* grad_out, const int64_t* index, int64_t index_count,
                                             int dim, int64_t skip_position, float* grad_x, DeviceShape x_shape,
                                             int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  int64_t inner = 1;  // the elements after dim: grad_out's stride along dim
  for (int d = dim + 1; d < x_shape.rank; ++d) inner *= x_shape.sizes[d];
  const int64_t position = i / inner % x_shape.sizes[dim];
  const int64_t outer = i / inner / x_shape.sizes[dim];
  const float* first = grad_out + outer * index_count * inner + i % inner;
  float sum = 0.0f;
  if (position != skip_position) {
    for (int64_t j = 0; j < index_count; ++j) {
      if (index[j] == position) sum += first[j * inner];
    }
  }
  grad_x[i] = sum;
}

__global__ void index_flags_kernel(const int64_t* ids, DeviceStrides ids_strides, int64_t value, bool equal,
                                   float* flags, DeviceShape shape, int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  flags[i] = (ids[strided_offset(shape, ids_strides, i)] == value) == equal ? 1.0f : 0.0f;
}

__global__ void attention_rules_kernel(AttentionMasking masking, int64_t queries, int64_t keys,
                                       float* blocked) {
  const int64_t i = global_thread_index();
  if (i >= queries * keys) return;
  blocked[i] = query_sees_key(masking, masking.query_offset + i / keys, i % keys) ? 0.0f : 1.0f;
}

__global__ void where_kernel(const float* condition, DeviceStrides condition_strides, const float* a,
                             DeviceStrides a_strides, const float* b, DeviceStrides b_strides, float* out,
                             DeviceShape shape, int64_t count) {
  const int64_t i = global_thread_index();
  if (i >= count) return;
  out[i] = condition[strided_offset(shape, condition_strides, i)] != 0.0f
               ? a[strided_offset(shape, a_strides, i)]
               : b[strided_offset(shape, b_strides, i)];
}

// --- the host side ------------------------------------------------------------------

int64_t find_index_out_of_range_device(const int64_t* ids, int64_t n, int64_t limit, bool has_allowed,
                                       int64_t allowed, int64_t* bad_id) {
  if (n <= 0) return -1;
  const DeviceBlock answer(2 * sizeof(int64_t));
  ATTEND_LAUNCH(find_index_out_of_range_kernel, dim3(1), dim3(1), 0, ids, n, limit, has_allowed, allowed,
                static_cast<int64_t*>(answer.get()));
  int64_t host[2];
  copy_to_host(host, answer.get(), sizeof(host));  // waits for the kernel
  if (host[0] >= 0 && bad_id != nullptr) *bad_id = host[1];
  return host[0];
}

void index_select_device(const float* x, const DeviceStrides& x_strides, int dim, const int64_t* index,
                         float* out, const DeviceShape& out_shape) {
  const int64_t count = element_count(out_shape);
  if (count == 0) return;
  ATTEND_LAUNCH(index_select_kernel, blocks_for(count, kIndexingThreads), dim3(kIndexingThreads), 0, x,
                x_strides, dim, index, out, out_shape, count);
}

void index_select_backward_device(const float* grad_out, const int64_t* index, int64_t index_count, int dim,
                                  int64_t skip_position, float* grad_x, const DeviceShape& x_shape) {
  const int64_t count = element_count(x_shape);
  if (count == 0) return;
  ATTEND_LAUNCH(index_select_backward_kernel, blocks_for(count, kIndexingThreads), dim3(kIndexingThreads), 0,
                grad_out, index, index_count, dim, skip_position, grad_x, x_shape, count);
}

void index_flags_device(const int64_t* ids, const DeviceStrides& ids_strides, int64_t value, bool equal,
                        float* flags, const DeviceShape& shape) {
  const int64_t count = element_count(shape);
  if (count == 0) return;
  ATTEND_LAUNCH(index_flags_kernel, blocks_for(count, kIndexingThreads), dim3(kIndexingThreads), 0, ids,
                ids_strides, value, equal, flags, shape, count);
}

void attention_rules_device(const AttentionMasking& masking, int64_t queries, int64_t keys, float* blocked) {
  if (queries * keys <= 0) return;
  ATTEND_LAUNCH(attention_rules_kernel, blocks_for(queries * keys, kIndexingThreads), dim3(kIndexingThreads), 0,
                masking, queries, keys, blocked);
}

void where_device(const float* condition, const DeviceStrides& condition_strides, const float* a,
                  const DeviceStrides& a_strides, const float* b, const DeviceStrides& b_strides, float* out,
                  const DeviceShape& shape) {
  const int64_t count = element_count(shape);
  if (count == 0) return;
  ATTEND_LAUNCH(where_kernel, blocks_for(count, kIndexingThreads), dim3(kIndexingThreads), 0, condition,
                condition_strides, a, a_strides, b, b_strides, out, shape, count);
}

}  // namespace attend::kernels
