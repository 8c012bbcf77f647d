// Selecting and combining: masked_fill, where, cat, stack, split,
// index_select and embedding (a gather whose backward is a scatter-add).
// Chapter 3 (docs/03-operations.md).
#include <algorithm>

#include "attend/ops.hpp"
#include "op_helpers.hpp"

namespace attend {

namespace {

using Grads = std::vector<Tensor>;

// A Float32 tensor holding 1 where t is nonzero and 0 elsewhere (any dtype).
Tensor nonzero_as_float(const Tensor& t, const std::string& op) {
  if (!t.defined()) throw Error(op + ": the mask is an undefined tensor");
  if (t.dtype() == DType::Float32) {
    return detail::map_unary(t, op, kernels::UnaryOp::nonzero, [](float v) { return kernels::nonzero_value(v); });
  }
  if (t.device() == Device::cuda) return index_flags(t, 0, /*equal=*/false);
  const std::vector<int64_t> values = t.to_index_vector();
  std::vector<float> flags(values.size());
  for (size_t i = 0; i < values.size(); ++i) flags[i] = values[i] != 0 ? 1.0f : 0.0f;
  return from_vector(flags, t.shape());
}

// The values of a 1-D Int64 index tensor, each checked to lie in [0, limit).
std::vector<int64_t> checked_indices(const Tensor& index, int64_t limit, const std::string& op,
                                     const Shape& source_shape) {
  detail::require_index(index, op);
  std::vector<int64_t> values = index.to_index_vector();
  for (int64_t v : values) {
    if (v < 0 || v >= limit) {
      throw Error(op + ": index " + std::to_string(v) + " is out of range [0, " +
                  std::to_string(limit) + ") for a source of shape " + to_string(source_shape));
    }
  }
  return values;
}

// The same check for a contiguous index on the device: a kernel finds the
// first bad entry, and only it comes back to the host.
void check_indices_on_device(const Tensor& index, int64_t limit, const std::string& op, const Shape& source_shape) {
  int64_t bad = 0;
  if (kernels::find_index_out_of_range_device(index.device_index_data(), index.numel(), limit,
                                              /*has_allowed=*/false, 0, &bad) >= 0) {
    throw Error(op + ": index " + std::to_string(bad) + " is out of range [0, " + std::to_string(limit) +
                ") for a source of shape " + to_string(source_shape));
  }
}

// index_select's and embedding's device side (src/kernels/indexing.cu): the
// entries of x at `index` (Int64, 1-D, on the device) along dim d, one
// thread per output element. The backward adds each entry of g back to the
// position it came from, one thread per element of x's gradient, in index
// order, so the bits are the CPU's on every run; the position skip_position
// (embedding's padding row; -1 for none) gets nothing. The result has x's
// shape with dim d of size index.numel(), or result_shape (as many elements,
// in that order) when one is given.
Tensor index_select_on_device(const Tensor& x, int64_t d, const Tensor& index, int64_t skip_position,
                              const std::string& op, const Shape& result_shape = {}) {
  const Tensor idx = index.contiguous();
  check_indices_on_device(idx, x.shape()[d], op, x.shape());
  Shape out_shape = x.shape();
  out_shape[d] = idx.numel();
  // every element written
  Tensor out = empty(result_shape.empty() ? out_shape : result_shape, Device::cuda);
  kernels::index_select_device(x.device_data(), device_strides(x.strides()), static_cast<int>(d),
                               idx.device_index_data(), out.device_data(), device_shape(out_shape, op));
  record_op(op, out, {x}, [idx, d, skip_position, shape = x.shape(), op](const Tensor& g) {
    const Tensor gc = g.contiguous();
    Tensor grad = empty(shape, Device::cuda);  // every element written
    kernels::index_select_backward_device(gc.device_data(), idx.device_index_data(), idx.numel(),
                                          static_cast<int>(d), skip_position, grad.device_data(),
                                          device_shape(shape, op));
    return Grads{grad};
  });
  return out;
}

}  // namespace

Tensor index_flags(const Tensor& ids, int64_t value, bool equal) {
  const std::string op = "index_flags";
  detail::require_index(ids, op, "ids");
  if (ids.device() == Device::cuda) {
    Tensor flags = empty(ids.shape(), Device::cuda);  // every element written
    kernels::index_flags_device(ids.device_index_data(), device_strides(ids.strides()), value, equal,
                                flags.device_data(), device_shape(ids.shape(), op));
    return flags;
  }
  const std::vector<int64_t> values = ids.to_index_vector();
  std::vector<float> flags(values.size());
  for (size_t i = 0; i < values.size(); ++i) flags[i] = (values[i] == value) == equal ? 1.0f : 0.0f;
  return from_vector(flags, ids.shape());
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, float value) {
  detail::require_float(x, "masked_fill", "input", detail::Runs::on_any_device);
  const Tensor flags = nonzero_as_float(mask, "masked_fill");
  if (broadcast_shapes(x.shape(), flags.shape(), "masked_fill") != x.shape()) {
    throw Error("masked_fill: mask of shape " + to_string(mask.shape()) +
                " does not broadcast to the input's shape " + to_string(x.shape()));
  }
  Tensor out = detail::map_binary(x, flags, "masked_fill", kernels::BinaryOp::masked_fill,
                                  [value](float v, float f) { return kernels::masked_fill_value(v, f, value); },
                                  value);
  // Filled positions are constants: their gradient is 0; the rest pass g through.
  record_op("masked_fill", out, {x}, [flags](const Tensor& g) {
    return Grads{masked_fill(g, flags, 0.0f)};
  });
  return out;
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  detail::require_float(a, "where", "second input", detail::Runs::on_any_device);
  detail::require_float(b, "where", "third input", detail::Runs::on_any_device);
  detail::require_same_device(a, b, "where", "second input", "third input");
  if (condition.defined()) detail::require_same_device(condition, a, "where", "condition", "second input");
  const Tensor flags = nonzero_as_float(condition, "where");
  const Shape shape = broadcast_shapes(flags.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  // Walk the three operands together, each through its broadcast strides.
  const Shape sf = broadcast_strides(flags.shape(), flags.strides(), shape, "where");
  const Shape sa = broadcast_strides(a.shape(), a.strides(), shape, "where");
  const Shape sb = broadcast_strides(b.shape(), b.strides(), shape, "where");
  Tensor out = empty(shape, a.device());  // every element written below
  if (a.device() == Device::cuda) {
    kernels::where_device(flags.device_data(), device_strides(sf), a.device_data(), device_strides(sa),
                          b.device_data(), device_strides(sb), out.device_data(), device_shape(shape, "where"));
  } else {
    const float* pf = detail::storage_floats(flags);
    const float* pa = detail::storage_floats(a);
    const float* pb = detail::storage_floats(b);
    float* o = out.data();
    int64_t i = 0;
    for_each_offset<3>(shape, {&sf, &sa, &sb}, {flags.offset(), a.offset(), b.offset()},
                       [&](const std::array<int64_t, 3>& off) {
                         o[i++] = pf[off[0]] != 0.0f ? pa[off[1]] : pb[off[2]];
                       });
  }
  // The gradient goes to a where the condition holds, to b elsewhere.
  record_op("where", out, {a, b}, [flags](const Tensor& g) {
    const Tensor zero = scalar_tensor(0.0f, g.device());
    return Grads{where(flags, g, zero), where(flags, zero, g)};
  });
  return out;
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) throw Error("cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  if (!first.defined()) throw Error("cat: tensor 0 is undefined");
  const int64_t d = normalize_dim(dim, first.shape(), "cat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined()) throw Error("cat: tensor " + std::to_string(i) + " is undefined");
    bool same = t.dim() == first.dim() && t.dtype() == first.dtype();
    for (int64_t k = 0; same && k < first.dim(); ++k) same = k == d || t.shape()[k] == first.shape()[k];
    if (!same) {
      throw Error("cat: tensor " + std::to_string(i) + " of shape " + to_string(t.shape()) + " (" +
                  to_string(t.dtype()) + ") does not match tensor 0 of shape " +
                  to_string(first.shape()) + " (" + to_string(first.dtype()) +
                  ") outside dim " + std::to_string(d));
    }
    detail::require_same_device(first, t, "cat", "tensor 0", ("tensor " + std::to_string(i)).c_str());
    out_shape[d] += t.shape()[d];
  }
  // Every element is written below, by a copy (a strided kernel on the device).
  Tensor out = empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> starts;
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    starts.push_back(start);
    copy_into(out.detach().narrow(d, start, t.shape()[d]), t);
    start += t.shape()[d];
  }
  // Each input's gradient is its own stretch of g along dim.
  record_op("cat", out, tensors, [starts, d, tensors](const Tensor& g) {
    Grads grads;
    for (size_t i = 0; i < tensors.size(); ++i) grads.push_back(g.narrow(d, starts[i], tensors[i].shape()[d]));
    return grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) throw Error("stack: needs at least one tensor");
  const int64_t d = normalize_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> pieces;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].shape() != tensors[0].shape()) {
      throw Error("stack: tensor " + std::to_string(i) + " has shape " + to_string(tensors[i].shape()) +
                  " but tensor 0 has shape " + to_string(tensors[0].shape()));
    }
    pieces.push_back(tensors[i].unsqueeze(d));
  }
  return cat(pieces, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.shape(), "split");
  if (split_size <= 0) throw Error("split: split_size must be positive, got " + std::to_string(split_size));
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < x.shape()[d]; start += split_size) {
    sizes.push_back(std::min(split_size, x.shape()[d] - start));
  }
  return split(x, sizes, d);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.shape(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  if (total != x.shape()[d]) {
    throw Error("split: sizes add up to " + std::to_string(total) + " but dim " +
                std::to_string(d) + " of shape " + to_string(x.shape()) + " has size " +
                std::to_string(x.shape()[d]));
  }
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(d, start, s));  // views: their backward is slice's
    start += s;
  }
  return pieces;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::require_float(x, "index_select", "input", detail::Runs::on_any_device);
  const int64_t d = normalize_dim(dim, x.shape(), "index_select");
  if (index.defined() && index.dim() != 1) {
    throw Error("index_select: index must be 1-D, got shape " + to_string(index.shape()));
  }
  detail::require_index(index, "index_select");
  detail::require_same_device(x, index, "index_select", "input", "index");
  if (x.device() == Device::cuda) return index_select_on_device(x, d, index, /*skip_position=*/-1, "index_select");
  const std::vector<int64_t> idx = checked_indices(index, x.shape()[d], "index_select", x.shape());
  Shape out_shape = x.shape();
  out_shape[d] = static_cast<int64_t>(idx.size());
  Tensor out = zeros(out_shape);
  const Tensor source = x.detach();
  for (size_t j = 0; j < idx.size(); ++j) {
    copy_into(out.select(d, static_cast<int64_t>(j)), source.select(d, idx[j]));
  }
  // Scatter-add: entry j of g goes back to position idx[j]; repeats add up.
  record_op("index_select", out, {x}, [idx, d, shape = x.shape()](const Tensor& g) {
    Tensor grad = zeros(shape);
    for (size_t j = 0; j < idx.size(); ++j) {
      const Tensor slot = grad.select(d, idx[j]);
      copy_into(slot, slot + g.select(d, static_cast<int64_t>(j)));
    }
    return Grads{grad};
  });
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
  detail::require_float(weight, "embedding", "weight", detail::Runs::on_any_device);
  if (weight.dim() != 2) {
    throw Error("embedding: weight must be 2-D (vocabulary, dim), got shape " + to_string(weight.shape()));
  }
  detail::require_index(ids, "embedding", "ids");
  detail::require_same_device(weight, ids, "embedding", "weight", "ids");
  const int64_t V = weight.size(0), D = weight.size(1);
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  if (weight.device() == Device::cuda) {
    // Rows of the weight picked by the ids: index_select along dim 0, whose
    // backward gives the padding row nothing.
    return index_select_on_device(weight, 0, ids.reshape({ids.numel()}), padding_idx, "embedding", out_shape);
  }
  const std::vector<int64_t> idx = checked_indices(ids.flatten(), V, "embedding", weight.shape());
  const Tensor w = weight.contiguous();
  Tensor out = empty(out_shape);  // every row is written below
  const float* src = w.data();
  float* o = out.data();
  const int64_t n = static_cast<int64_t>(idx.size());
  parallel_for(n, n * D >= detail::kParallelThreshold,
               [&](int64_t i) { std::copy(src + idx[i] * D, src + (idx[i] + 1) * D, o + i * D); });
  // Scatter-add: row i of g is added to row idx[i] of the weight's gradient
  // (in order of i, so repeated ids add up in a fixed order). The padding row
  // gets nothing. Threads share the D columns, not the ids: two ids may be
  // the same row, and two threads adding to one place would race; a strip
  // of columns belongs to one thread, which adds in order of i as one would.
  record_op("embedding", out, {weight}, [idx, V, D, padding_idx](const Tensor& g) {
    // The gradient is zero but for the rows of the ids: zeroed by the threads
    // together (one thread took 0.27 ms a step for a 4,769 x 256 vocabulary).
    Tensor grad = empty({V, D});
    float* wp = grad.data();
    parallel_for_simd(V * D, V * D >= detail::kParallelThreshold, [&](int64_t i) { wp[i] = 0.0f; });
    const Tensor gc = g.contiguous();
    const float* gp = gc.data();
    const int64_t n = static_cast<int64_t>(idx.size());
    const int64_t strips = (D + detail::kColumnsPerTask - 1) / detail::kColumnsPerTask;
    parallel_for(strips, n * D >= detail::kParallelThreshold, [&](int64_t strip) {
      const int64_t k0 = strip * detail::kColumnsPerTask;
      const int64_t k1 = std::min(D, k0 + detail::kColumnsPerTask);
      for (int64_t i = 0; i < n; ++i) {
        if (idx[i] == padding_idx) continue;
        for (int64_t k = k0; k < k1; ++k) wp[idx[i] * D + k] += gp[i * D + k];
      }
    });
    return Grads{grad};
  });
  return out;
}

}  // namespace attend
