// Shapes, strides and the broadcasting rule: the arithmetic of n-d arrays.
// Chapter 1 (docs/01-tensors.md). Everything here is plain integers; no data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attend/error.hpp"

namespace attend {

using Shape = std::vector<int64_t>;

// "(2, 3)"; a 0-d shape prints as "()".
std::string to_string(const Shape& shape);

// Number of elements: the product of the sizes (1 for a 0-d shape).
int64_t numel(const Shape& shape);

// Row-major ("C order") strides: the last dimension moves fastest.
// (2, 3, 4) -> (12, 4, 1)
Shape contiguous_strides(const Shape& shape);

// Turns a possibly negative dim (-1 = last) into 0..rank-1, or throws
// "<op>: dim 3 is out of range for a tensor with 2 dimensions".
int64_t normalize_dim(int64_t dim, int64_t rank, const std::string& op);
// The same for a tensor of shape `shape` (rank = shape.size()); the error names
// the shape: "<op>: dim 3 is out of range for a tensor of shape (2, 3)".
int64_t normalize_dim(int64_t dim, const Shape& shape, const std::string& op);

// NumPy broadcasting: align the shapes at the right; two sizes are compatible
// when they are equal or one of them is 1, and the result takes the larger.
// (4, 1, 3) and (5, 1) -> (4, 5, 3). Throws naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const std::string& op);

// Strides that read a tensor of shape `shape`/`strides` as if it had the
// (broadcast) shape `target`: new leading dims and dims of size 1 get stride 0,
// so every index along them reads the same element. No data is copied.
Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& target,
                        const std::string& op);

}  // namespace attend
