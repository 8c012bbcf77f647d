// Printing tensors the way PyTorch users expect to read them:
//   tensor([[ 1.0000, -2.5000],
//           [ 0.0000,  3.0000]], shape=(2, 2))
// Long tensors are elided with "..." (the first and last 3 along a long dim).
// Chapter 1 (docs/01-tensors.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>

#include "attend/tensor.hpp"

namespace attend {

namespace {

constexpr int64_t kElideAbove = 1000;  // print everything up to this many elements
constexpr int64_t kEdgeItems = 3;      // otherwise, this many at each end of a long dim

struct Printer {
  const Tensor& t;
  bool elide;
  bool fixed;     // fixed-point (%.4f) unless values are very large or very small
  int width = 0;  // every number is padded to this width so columns line up

  std::string format(double v) const {
    char buf[64];
    if (std::isnan(v)) return "nan";  // printf may write "-nan" depending on the sign bit
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (t.dtype() == DType::Int64) {
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    } else if (fixed) {
      std::snprintf(buf, sizeof buf, "%.4f", v);
    } else {
      std::snprintf(buf, sizeof buf, "%.4e", v);
    }
    return buf;
  }

  double value(const std::vector<int64_t>& index) const {
    return t.dtype() == DType::Int64 ? static_cast<double>(t.index_at(index)) : t.at(index);
  }

  // Indices shown along a dim: all, or the first and last kEdgeItems with -1 for "...".
  std::vector<int64_t> shown(int64_t size) const {
    std::vector<int64_t> idx;
    if (!elide || size <= 2 * kEdgeItems) {
      for (int64_t i = 0; i < size; ++i) idx.push_back(i);
    } else {
      for (int64_t i = 0; i < kEdgeItems; ++i) idx.push_back(i);
      idx.push_back(-1);
      for (int64_t i = size - kEdgeItems; i < size; ++i) idx.push_back(i);
    }
    return idx;
  }

  void visit_values(std::vector<int64_t>& index, size_t d, std::vector<double>& out) const {
    if (d == index.size()) {
      out.push_back(value(index));
      return;
    }
    for (int64_t i : shown(t.shape()[d])) {
      if (i < 0) continue;
      index[d] = i;
      visit_values(index, d + 1, out);
    }
  }

  void print(std::string& s, std::vector<int64_t>& index, size_t d, size_t indent) const {
    const size_t rank = index.size();
    s += '[';
    const std::vector<int64_t> idx = shown(t.shape()[d]);
    for (size_t k = 0; k < idx.size(); ++k) {
      if (k > 0) {
        s += ',';
        if (d + 1 == rank) {
          s += ' ';
        } else {
          s += std::string(rank - d - 1, '\n');  // a blank line between blocks of 3-d+
          s += std::string(indent + d + 1, ' ');
        }
      }
      if (idx[k] < 0) {
        s += "...";
        continue;
      }
      index[d] = idx[k];
      if (d + 1 == rank) {
        std::string num = format(value(index));
        s += std::string(static_cast<size_t>(std::max(0, width - static_cast<int>(num.size()))), ' ');
        s += num;
      } else {
        print(s, index, d + 1, indent);
      }
    }
    s += ']';
  }
};

}  // namespace

std::string Tensor::to_string() const {
  if (!defined()) return "tensor(undefined)";
  // A tensor on the device is printed from a copy on the host (chapter 11).
  const Tensor host = to_device(*this, Device::cpu);
  Printer p{host, numel() > kElideAbove, true};
  std::vector<int64_t> index(static_cast<size_t>(dim()), 0);

  // Look at the values that will be shown to pick a format and a column width.
  std::vector<double> values;
  p.visit_values(index, 0, values);
  double largest = 0.0, smallest_nonzero = INFINITY;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    largest = std::max(largest, std::fabs(v));
    if (v != 0.0) smallest_nonzero = std::min(smallest_nonzero, std::fabs(v));
  }
  p.fixed = largest < 1e5 && (smallest_nonzero == INFINITY || smallest_nonzero >= 1e-4);
  for (double v : values) p.width = std::max(p.width, static_cast<int>(p.format(v).size()));

  std::string s = "tensor(";
  if (dim() == 0) {
    s += p.format(p.value({}));
  } else {
    p.print(s, index, 0, 7);  // 7 = strlen("tensor(")
  }
  s += ", shape=" + attend::to_string(shape());
  if (dtype() != DType::Float32) s += ", dtype=" + attend::to_string(dtype());
  if (device() != Device::cpu) s += ", device=" + attend::to_string(device());
  if (!grad_fn_name().empty()) {
    s += ", grad_fn=<" + grad_fn_name() + ">";
  } else if (requires_grad()) {
    s += ", requires_grad=true";
  }
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace attend
