// Shapes, strides and broadcasting (chapter 1, docs/01-tensors.md).
#include "attend/shape.hpp"

#include <algorithm>

namespace attend {

std::string to_string(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";  // a 1-tuple, as Python writes it: (5,)
  return s + ")";
}

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t size : shape) n *= size;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  // exercise 1.1 begin: contiguous (row-major) strides: strides[d] = product of shape[d+1:]
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
  // exercise 1.1 end
}

int64_t normalize_dim(int64_t dim, int64_t rank, const std::string& op) {
  int64_t d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    throw Error(op + ": dim " + std::to_string(dim) + " is out of range for a tensor with " +
                std::to_string(rank) + " dimension" + (rank == 1 ? "" : "s"));
  }
  return d;
}

int64_t normalize_dim(int64_t dim, const Shape& shape, const std::string& op) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) {
    throw Error(op + ": dim " + std::to_string(dim) + " is out of range for a tensor of shape " +
                to_string(shape));
  }
  return d;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const std::string& op) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    // Walk from the right: i = 0 is the last dimension of both.
    const int64_t sa = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t sb = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      throw Error(op + ": shapes " + to_string(a) + " and " + to_string(b) +
                  " cannot be broadcast together (size " + std::to_string(sa) + " vs " +
                  std::to_string(sb) + " in dimension " + std::to_string(rank - 1 - i) +
                  " of the result)");
    }
    out[rank - 1 - i] = sa == 1 ? sb : sa;
  }
  return out;
}

Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& target,
                        const std::string& op) {
  if (shape.size() > target.size()) {
    throw Error(op + ": cannot broadcast shape " + to_string(shape) + " to " + to_string(target));
  }
  // exercise 1.3 begin: strides that read shape as target: 0 for new leading dims and stretched size-1 dims
  const size_t lead = target.size() - shape.size();
  Shape out(target.size(), 0);  // new leading dims: stride 0
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == target[lead + i]) {
      out[lead + i] = strides[i];
    } else if (shape[i] == 1) {
      out[lead + i] = 0;  // size 1 stretched: every index reads element 0
    } else {
      throw Error(op + ": cannot broadcast shape " + to_string(shape) + " to " +
                  to_string(target));
    }
  }
  return out;
  // exercise 1.3 end
}

}  // namespace attend
