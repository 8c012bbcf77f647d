// Views: new shape/strides/offset over the same storage, no data copied.
// Chapter 1 teaches the layouts (docs/01-tensors.md); each view is also a
// differentiable op whose backward sits beside it (docs/03-operations.md).
#include <algorithm>
#include <numeric>
#include <optional>

#include "attend/autograd.hpp"
#include "attend/tensor.hpp"
#include "op_helpers.hpp"

namespace attend {

namespace {

// Replaces a single -1 in `shape` by whatever makes the element count `total`.
Shape infer_size(Shape shape, int64_t total, const std::string& op, const Shape& from) {
  int64_t known = 1;
  int64_t infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer_at >= 0) throw Error(op + ": only one dimension can be -1, got " + attend::to_string(shape));
      infer_at = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      throw Error(op + ": invalid size in shape " + attend::to_string(shape));
    } else {
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    if (known == 0 || total % known != 0) {
      throw Error(op + ": shape " + attend::to_string(shape) + " is invalid for input of shape " +
                  attend::to_string(from));
    }
    shape[static_cast<size_t>(infer_at)] = total / known;
  } else if (known != total) {
    throw Error(op + ": shape " + attend::to_string(shape) + " is invalid for input of shape " +
                attend::to_string(from) + " (" + std::to_string(total) + " elements)");
  }
  return shape;
}

// Strides that let `new_shape` read the same elements, in the same row-major
// order, as (old_shape, old_strides) -- or nothing if that needs a copy.
// Old dims are grouped into "chunks" that are contiguous with each other
// (stride[i] == stride[i+1] * size[i+1]); a view may split and merge dims
// only within a chunk.
std::optional<Shape> strides_for_view(const Shape& old_shape, const Shape& old_strides,
                                      const Shape& new_shape) {
  if (numel(old_shape) == 0 || old_shape.empty()) return contiguous_strides(new_shape);
  Shape new_strides(new_shape.size(), 1);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_stride = old_strides.back();  // stride of the chunk's last dim
  int64_t chunk_numel = 1;                     // elements in the chunk so far
  int64_t view_numel = 1;                      // elements of new dims given to it
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    chunk_numel *= old_shape[d];
    const bool chunk_ends =
        d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != chunk_numel * chunk_stride);
    if (!chunk_ends) continue;
    // Hand new dims (from the right) to this chunk until they cover it.
    while (view_d >= 0 && (view_numel < chunk_numel || new_shape[view_d] == 1)) {
      new_strides[view_d] = view_numel * chunk_stride;
      view_numel *= new_shape[view_d];
      --view_d;
    }
    if (view_numel != chunk_numel) return std::nullopt;  // a new dim straddles two chunks
    if (d > 0) {
      chunk_stride = old_strides[d - 1];
      chunk_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return new_strides;
}

// A view of x with the given layout, recorded with `backward`.
Tensor make_view(const Tensor& x, const Shape& shape, const Shape& strides, int64_t offset,
                 const std::string& op, BackwardFn backward) {
  Tensor out = as_strided(x, shape, strides, offset);
  record_op(op, out, {x}, std::move(backward));
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  const Shape target = infer_size(shape, numel(), "view", this->shape());
  const std::optional<Shape> strides_ = strides_for_view(this->shape(), strides(), target);
  if (!strides_) {
    throw Error("view: shape " + attend::to_string(target) + " cannot view a tensor of shape " +
                attend::to_string(this->shape()) + " with strides " + attend::to_string(strides()) +
                " without copying; use reshape()");
  }
  const Shape input_shape = this->shape();
  // Backward: the gradient has the view's shape; read it back in the input's shape.
  return make_view(*this, target, *strides_, offset(), "view",
                   [input_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(input_shape)}; });
}

Tensor Tensor::reshape(const Shape& shape) const {
  const Shape target = infer_size(shape, numel(), "reshape", this->shape());
  if (strides_for_view(this->shape(), strides(), target)) return view(target);
  return contiguous().view(target);  // as PyTorch does: a copy only when a view is impossible
}

Tensor Tensor::flatten() const { return reshape({numel()}); }

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  const int64_t d0 = normalize_dim(dim0, dim(), "transpose");
  const int64_t d1 = normalize_dim(dim1, dim(), "transpose");
  Shape shape_ = shape(), strides_ = strides();
  std::swap(shape_[d0], shape_[d1]);
  std::swap(strides_[d0], strides_[d1]);
  // Backward: swapping the same two dims again undoes the transpose.
  return make_view(*this, shape_, strides_, offset(), "transpose", [d0, d1](const Tensor& g) {
    return std::vector<Tensor>{g.transpose(d0, d1)};
  });
}

Tensor Tensor::t() const {
  if (dim() != 2) throw Error("t: expects a 2-D tensor, got shape " + attend::to_string(shape()));
  return transpose(0, 1);
}

Tensor Tensor::permute(const Shape& dims) const {
  if (static_cast<int64_t>(dims.size()) != dim()) {
    throw Error("permute: got " + std::to_string(dims.size()) + " dims for a tensor of shape " +
                attend::to_string(shape()));
  }
  Shape shape_(dims.size()), strides_(dims.size()), inverse(dims.size(), -1);
  // exercise 1.4 begin: permute's layout: shape_[i], strides_[i] from input dim dims[i], and inverse
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = normalize_dim(dims[i], dim(), "permute");
    if (inverse[d] != -1) throw Error("permute: dim " + std::to_string(d) + " appears twice in " + attend::to_string(dims));
    inverse[d] = static_cast<int64_t>(i);
    shape_[i] = shape()[d];
    strides_[i] = strides()[d];
  }
  // exercise 1.4 end
  // Backward: the inverse permutation puts every dim back where it was.
  return make_view(*this, shape_, strides_, offset(), "permute", [inverse](const Tensor& g) {
    return std::vector<Tensor>{g.permute(inverse)};
  });
}

Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  const int64_t d = normalize_dim(dim_, dim(), "slice");
  if (step <= 0) throw Error("slice: step must be positive, got " + std::to_string(step));
  const int64_t n = shape()[d];
  // Python's rules: negative positions count from the end; out of range clamps.
  auto clamp = [n](int64_t i) { return std::clamp(i < 0 ? i + n : i, int64_t{0}, n); };
  const int64_t lo = clamp(start), hi = std::max(clamp(end), clamp(start));
  Shape shape_ = shape(), strides_ = strides();
  shape_[d] = (hi - lo + step - 1) / step;
  strides_[d] *= step;
  const Shape input_shape = shape();
  // Backward: the gradient lands in the sliced positions of a zero tensor.
  return make_view(*this, shape_, strides_, offset() + lo * strides()[d], "slice",
                   [input_shape, d, lo, hi, step](const Tensor& g) {
                     Tensor grad = zeros(input_shape, g.device());
                     copy_into(grad.slice(d, lo, hi, step), g);
                     return std::vector<Tensor>{grad};
                   });
}

Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  const int64_t d = normalize_dim(dim_, dim(), "narrow");
  if (start < 0 || length < 0 || start + length > shape()[d]) {
    throw Error("narrow: range [" + std::to_string(start) + ", " + std::to_string(start + length) +
                ") is out of bounds for dim " + std::to_string(d) + " of shape " + attend::to_string(shape()));
  }
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim_, int64_t index) const {
  const int64_t d = normalize_dim(dim_, dim(), "select");
  const int64_t i = index < 0 ? index + shape()[d] : index;
  if (i < 0 || i >= shape()[d]) {
    throw Error("select: index " + std::to_string(index) + " is out of range for dim " +
                std::to_string(d) + " of shape " + attend::to_string(shape()));
  }
  return slice(d, i, i + 1).squeeze(d);
}

Tensor Tensor::unsqueeze(int64_t dim_) const {
  const int64_t d = normalize_dim(dim_, dim() + 1, "unsqueeze");
  Shape shape_ = shape(), strides_ = strides();
  // Any stride works for a size-1 dim; this one keeps a contiguous tensor contiguous.
  const int64_t stride = d < dim() ? shape()[d] * strides()[d] : 1;
  shape_.insert(shape_.begin() + d, 1);
  strides_.insert(strides_.begin() + d, stride);
  return make_view(*this, shape_, strides_, offset(), "unsqueeze", [d](const Tensor& g) {
    return std::vector<Tensor>{g.squeeze(d)};
  });
}

Tensor Tensor::squeeze(int64_t dim_) const {
  const int64_t d = normalize_dim(dim_, dim(), "squeeze");
  if (shape()[d] != 1) return *this;  // as in PyTorch: only a size-1 dim is removed
  Shape shape_ = shape(), strides_ = strides();
  shape_.erase(shape_.begin() + d);
  strides_.erase(strides_.begin() + d);
  return make_view(*this, shape_, strides_, offset(), "squeeze", [d](const Tensor& g) {
    return std::vector<Tensor>{g.unsqueeze(d)};
  });
}

Tensor Tensor::squeeze() const {
  Shape shape_, strides_;
  for (int64_t d = 0; d < dim(); ++d) {
    if (shape()[d] == 1) continue;
    shape_.push_back(shape()[d]);
    strides_.push_back(strides()[d]);
  }
  const Shape input_shape = shape();
  return make_view(*this, shape_, strides_, offset(), "squeeze", [input_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(input_shape)};
  });
}

Tensor Tensor::expand(const Shape& shape_) const {
  Shape target = shape_;
  // -1 keeps the size the tensor already has in that (right-aligned) dim.
  const int64_t lead = static_cast<int64_t>(target.size()) - dim();
  for (int64_t i = 0; i < static_cast<int64_t>(target.size()); ++i) {
    if (target[i] == -1) {
      if (i < lead) throw Error("expand: -1 is not allowed for a new leading dim in " + attend::to_string(shape_));
      target[i] = shape()[i - lead];
    } else if (target[i] < 0) {
      throw Error("expand: invalid size " + std::to_string(target[i]) + " in " + attend::to_string(shape_));
    }
  }
  const Shape strides_ = broadcast_strides(shape(), strides(), target, "expand");
  // Backward: the engine sums the gradient over the stretched dims
  // (sum_to_shape), exactly as for any broadcast input.
  return make_view(*this, target, strides_, offset(), "expand",
                   [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = copy_to_contiguous(*this);
  // Backward: a copy passes the gradient through unchanged.
  record_op("clone", out, {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

// A copy to another device (chapter 11, docs/11-cuda.md): the only way data
// moves between the host and the GPU.
Tensor Tensor::to(Device device) const {
  if (this->device() == device) return *this;
  Tensor out = to_device(*this, device);
  // Backward: the gradient goes back to the device the input came from.
  record_op("to", out, {*this}, [from = this->device()](const Tensor& g) {
    return std::vector<Tensor>{to_device(g, from)};
  });
  return out;
}

Tensor Tensor::cpu() const { return to(Device::cpu); }
Tensor Tensor::cuda() const { return to(Device::cuda); }

}  // namespace attend
