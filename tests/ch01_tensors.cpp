// Tests for chapter 1, Tensors (docs/01-tensors.md): storage, shape, strides
// and offset; views and when they copy; broadcasting; factories and seeded
// randomness; element access; printing. Only the tensor layer is used here
// (shape.hpp, tensor.hpp, random.hpp, strided.hpp); no autograd, no ops.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "attend/random.hpp"
#include "attend/shape.hpp"
#include "attend/strided.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"

using namespace attend;
using attend_test::contains;

namespace {

using Floats = std::vector<float>;

// 0, 1, ..., n-1 laid out in `shape` (row-major), without arange's float path.
Tensor counting(const Shape& shape) {
  Floats values(static_cast<size_t>(numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  return from_vector(values, shape);
}

}  // namespace

// --- shapes and strides ---

TEST_CASE("shape arithmetic: to_string, numel, contiguous strides, normalize_dim", "[ch01]") {
  CHECK(to_string(Shape{2, 3}) == "(2, 3)");
  CHECK(to_string(Shape{5}) == "(5,)");  // a 1-tuple, written as Python does
  CHECK(to_string(Shape{}) == "()");
  CHECK(numel(Shape{2, 3, 4}) == 24);
  CHECK(numel(Shape{}) == 1);  // a 0-d tensor holds one element
  CHECK(numel(Shape{3, 0}) == 0);
  // Row-major: the last dim moves fastest, stride of dim d = product of sizes right of it.
  CHECK(contiguous_strides({2, 3, 4}) == Shape{12, 4, 1});
  CHECK(contiguous_strides({5}) == Shape{1});
  CHECK(contiguous_strides({}) == Shape{});
  CHECK(normalize_dim(-1, 3, "op") == 2);
  CHECK(normalize_dim(-3, 3, "op") == 0);
  CHECK(normalize_dim(1, 3, "op") == 1);
  REQUIRE_THROWS_MENTIONING(normalize_dim(3, 2, "sum"), "sum", "dim 3", "out of range");
  REQUIRE_THROWS_MENTIONING(normalize_dim(-3, 2, "sum"), "sum", "dim -3");
}

TEST_CASE("a tensor is shape, strides and offset over shared storage", "[ch01]") {
  Tensor t = counting({2, 3, 4});
  CHECK(t.shape() == Shape{2, 3, 4});
  CHECK(t.strides() == Shape{12, 4, 1});
  CHECK(t.offset() == 0);
  CHECK(t.dim() == 3);
  CHECK(t.size(0) == 2);
  CHECK(t.size(-1) == 4);
  CHECK(t.numel() == 24);
  CHECK(t.dtype() == DType::Float32);
  CHECK(t.is_contiguous());
  REQUIRE_THROWS_MENTIONING(t.size(3), "size", "dim 3");

  // Element (i, j, k) lives at storage[offset + 12 i + 4 j + k]: (1, 2, 3) -> 12 + 8 + 3 = 23.
  CHECK(t.at({1, 2, 3}) == 23.0f);
  CHECK(t.data()[12 * 1 + 4 * 2 + 3] == 23.0f);

  // Copying the handle shares the array (as in PyTorch); clone() does not.
  Tensor alias = t;
  alias.set({0, 0, 0}, 100.0f);
  CHECK(t.at({0, 0, 0}) == 100.0f);
  CHECK(alias.shares_storage_with(t));
  Tensor copy = t.clone();
  copy.set({0, 0, 1}, -1.0f);
  CHECK(t.at({0, 0, 1}) == 1.0f);
  CHECK_FALSE(copy.shares_storage_with(t));

  Tensor undefined;
  CHECK_FALSE(undefined.defined());
  CHECK_FALSE(undefined.shares_storage_with(t));
  REQUIRE_THROWS_MENTIONING(undefined.shape(), "undefined tensor");
  CHECK(undefined.to_string() == "tensor(undefined)");
}

// --- views ---

TEST_CASE("view and reshape of a contiguous tensor share storage", "[ch01][views]") {
  Tensor t = counting({2, 6});
  Tensor v = t.view({3, 4});
  CHECK(v.shape() == Shape{3, 4});
  CHECK(v.strides() == Shape{4, 1});
  CHECK(v.shares_storage_with(t));
  CHECK(v.at({2, 1}) == 9.0f);  // row-major position 2*4 + 1 = 9

  // -1 is inferred from the element count: 12 / 2 = 6 ... then (2, 2, 3).
  CHECK(t.view({-1}).shape() == Shape{12});
  CHECK(t.reshape({2, -1, 3}).shape() == Shape{2, 2, 3});
  REQUIRE_THROWS_MENTIONING(t.view({-1, -1}), "view", "only one dimension can be -1");
  REQUIRE_THROWS_MENTIONING(t.view({5, -1}), "view", "(5, -1)", "(2, 6)");
  REQUIRE_THROWS_MENTIONING(t.reshape({5, 2}), "reshape", "(5, 2)", "(2, 6)", "12 elements");

  Tensor r = t.reshape({4, 3});
  CHECK(r.shares_storage_with(t));  // possible as a view, so it is one
  // Writes through a view are visible in the base, and the other way round.
  r.set({3, 2}, -5.0f);  // element 3*3 + 2 = 11 of the storage = t[1, 5]
  CHECK(t.at({1, 5}) == -5.0f);
  t.set({0, 0}, 42.0f);
  CHECK(v.at({0, 0}) == 42.0f);
  CHECK(t.flatten().shape() == Shape{12});
  CHECK(t.flatten().shares_storage_with(t));
}

TEST_CASE("reshape of a transposed tensor copies; view of it throws", "[ch01][views]") {
  Tensor t = counting({2, 3});  // [[0, 1, 2], [3, 4, 5]]
  Tensor tt = t.t();            // [[0, 3], [1, 4], [2, 5]], strides (1, 3)
  CHECK(tt.strides() == Shape{1, 3});
  CHECK_FALSE(tt.is_contiguous());

  // Reading tt row by row walks the storage 0, 3, 1, 4, 2, 5: no single
  // stride does that, so a flat view is impossible and reshape must copy.
  Tensor flat = tt.reshape({6});
  CHECK(flat.to_vector() == Floats{0, 3, 1, 4, 2, 5});
  CHECK_FALSE(flat.shares_storage_with(t));
  flat.set({0}, 99.0f);
  CHECK(t.at({0, 0}) == 0.0f);  // the copy is independent

  REQUIRE_THROWS_MENTIONING(tt.view({6}), "view", "(6,)", "(3, 2)", "strides (1, 3)",
                            "use reshape()");

  // A view that keeps tt's dims (only adds a size-1 dim) still works on it.
  Tensor u = tt.view({3, 1, 2});
  CHECK(u.shares_storage_with(t));
  CHECK(u.at({2, 0, 1}) == 5.0f);
}

TEST_CASE("view can merge dims that are contiguous with each other, even in a non-contiguous tensor",
          "[ch01][views]") {
  // Columns 1..2 of a (2, 3, 4) tensor along the last dim: shape (2, 3, 2),
  // strides (12, 4, 1), offset 1. Dims 0 and 1 are "chunked" (12 = 3 * 4), so
  // they merge into one dim of 6 with stride 4; the last dim cannot join them.
  Tensor base = counting({2, 3, 4});
  Tensor s = base.slice(2, 1, 3);
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(s.offset() == 1);
  CHECK_FALSE(s.is_contiguous());
  Tensor merged = s.view({6, 2});
  CHECK(merged.strides() == Shape{4, 1});
  CHECK(merged.shares_storage_with(base));
  // Row 4 of merged is (i=1, j=1): storage 12 + 4 + 1 = 17 and 18.
  CHECK(merged.at({4, 0}) == 17.0f);
  CHECK(merged.at({4, 1}) == 18.0f);
  REQUIRE_THROWS_MENTIONING(s.view({12}), "view", "use reshape()");
  Tensor copied = s.reshape({12});
  CHECK_FALSE(copied.shares_storage_with(base));
  CHECK(copied.to_vector() == Floats{1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22});
}

TEST_CASE("transpose and permute swap strides, not data", "[ch01][views]") {
  Tensor t = counting({2, 3, 4});
  Tensor tr = t.transpose(0, 2);  // (4, 3, 2), strides (1, 4, 12)
  CHECK(tr.shape() == Shape{4, 3, 2});
  CHECK(tr.strides() == Shape{1, 4, 12});
  CHECK(tr.shares_storage_with(t));
  CHECK(tr.at({3, 1, 1}) == t.at({1, 1, 3}));  // 12 + 4 + 3 = 19
  CHECK(tr.at({3, 1, 1}) == 19.0f);
  CHECK(t.transpose(-1, -3).strides() == Shape{1, 4, 12});  // negative dims count from the end

  Tensor p = t.permute({1, 2, 0});  // new dim i is old dim dims[i]
  CHECK(p.shape() == Shape{3, 4, 2});
  CHECK(p.strides() == Shape{4, 1, 12});
  CHECK(p.at({2, 3, 1}) == t.at({1, 2, 3}));  // 12 + 8 + 3 = 23
  CHECK(p.at({2, 3, 1}) == 23.0f);
  CHECK(t.permute({0, 1, 2}).is_contiguous());

  REQUIRE_THROWS_MENTIONING(t.permute({0, 1}), "permute", "2 dims", "(2, 3, 4)");
  REQUIRE_THROWS_MENTIONING(t.permute({0, 0, 1}), "permute", "appears twice");
  REQUIRE_THROWS_MENTIONING(t.transpose(0, 3), "transpose", "dim 3");
  REQUIRE_THROWS_MENTIONING(t.t(), "t:", "2-D", "(2, 3, 4)");

  // Writing through a permuted view changes the base.
  p.set({0, 0, 1}, -7.0f);  // = t[1, 0, 0], storage 12
  CHECK(t.data()[12] == -7.0f);
}

TEST_CASE("slice and narrow: start, end, step, negative positions, clamping", "[ch01][views]") {
  Tensor x = counting({10});
  Tensor s = x.slice(0, 2, 8, 3);  // 2, 5 (8 is excluded)
  CHECK(s.shape() == Shape{2});
  CHECK(s.strides() == Shape{3});
  CHECK(s.offset() == 2);
  CHECK(s.to_vector() == Floats{2, 5});
  CHECK(x.slice(0, 1, 10, 4).to_vector() == Floats{1, 5, 9});  // ceil(9 / 4) = 3 elements
  // Negative positions count from the end: -3 -> 7, -1 -> 9.
  CHECK(x.slice(0, -3, -1).to_vector() == Floats{7, 8});
  // Out-of-range positions clamp, as in Python: [-100, 100) is everything, [8, 100) is 8, 9.
  CHECK(x.slice(0, -100, 100).numel() == 10);
  CHECK(x.slice(0, 8, 100).to_vector() == Floats{8, 9});
  // An empty range (start at or after end) gives an empty tensor.
  CHECK(x.slice(0, 6, 3).numel() == 0);
  CHECK(x.slice(0, 20, 30).numel() == 0);
  REQUIRE_THROWS_MENTIONING(x.slice(0, 0, 5, 0), "slice", "step must be positive");
  REQUIRE_THROWS_MENTIONING(x.slice(1, 0, 5), "slice", "dim 1");

  // On a 2-D tensor: rows 1..2, every other column.
  Tensor m = counting({3, 4});
  Tensor sm = m.slice(0, 1, 3).slice(1, 0, 4, 2);  // [[4, 6], [8, 10]]
  CHECK(sm.shape() == Shape{2, 2});
  CHECK(sm.strides() == Shape{4, 2});
  CHECK(sm.offset() == 4);
  CHECK(sm.to_vector() == Floats{4, 6, 8, 10});
  sm.set({1, 1}, -1.0f);  // writes storage 4 + 4 + 2 = 10
  CHECK(m.at({2, 2}) == -1.0f);

  Tensor n = m.narrow(1, 1, 2);  // columns 1, 2
  CHECK(n.shape() == Shape{3, 2});
  CHECK(n.offset() == 1);
  CHECK(n.to_vector() == Floats{1, 2, 5, 6, 9, -1});
  CHECK(m.narrow(-1, 0, 0).numel() == 0);
  REQUIRE_THROWS_MENTIONING(m.narrow(1, 3, 2), "narrow", "[3, 5)", "(3, 4)");
  REQUIRE_THROWS_MENTIONING(m.narrow(1, -1, 1), "narrow", "out of bounds");
}

TEST_CASE("select drops a dim; unsqueeze and squeeze add and remove size-1 dims", "[ch01][views]") {
  Tensor m = counting({3, 4});
  Tensor row = m.select(0, 1);  // [4, 5, 6, 7]
  CHECK(row.shape() == Shape{4});
  CHECK(row.to_vector() == Floats{4, 5, 6, 7});
  Tensor col = m.select(1, -1);  // the last column: [3, 7, 11]
  CHECK(col.shape() == Shape{3});
  CHECK(col.strides() == Shape{4});
  CHECK(col.to_vector() == Floats{3, 7, 11});
  col.set({1}, 0.5f);
  CHECK(m.at({1, 3}) == 0.5f);
  CHECK(m.select(0, 2).select(0, 1).dim() == 0);  // a 0-d view of one element
  CHECK(m.select(0, 2).select(0, 1).item() == 9.0f);
  REQUIRE_THROWS_MENTIONING(m.select(0, 3), "select", "index 3", "(3, 4)");
  REQUIRE_THROWS_MENTIONING(m.select(1, -5), "select", "index -5");

  Tensor u0 = m.unsqueeze(0);
  CHECK(u0.shape() == Shape{1, 3, 4});
  CHECK(u0.is_contiguous());
  CHECK(u0.shares_storage_with(m));
  Tensor u_last = m.unsqueeze(-1);  // -1 means "after the last dim" here
  CHECK(u_last.shape() == Shape{3, 4, 1});
  CHECK(u_last.is_contiguous());
  CHECK(m.unsqueeze(1).shape() == Shape{3, 1, 4});
  REQUIRE_THROWS_MENTIONING(m.unsqueeze(3), "unsqueeze", "dim 3");

  Tensor z = zeros({1, 3, 1, 2});
  CHECK(z.squeeze().shape() == Shape{3, 2});
  CHECK(z.squeeze(2).shape() == Shape{1, 3, 2});
  CHECK(z.squeeze(-4).shape() == Shape{3, 1, 2});
  CHECK(z.squeeze(1).shape() == Shape{1, 3, 1, 2});  // size 3: left alone, as in PyTorch
  CHECK(zeros({1, 1}).squeeze().dim() == 0);
}

TEST_CASE("expand stretches size-1 dims with stride 0", "[ch01][views][broadcast]") {
  Tensor col = from_vector({1, 2, 3}, {3, 1});
  Tensor e = col.expand({2, 3, 4});  // a new leading dim and the size-1 dim stretched
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(e.shares_storage_with(col));
  CHECK_FALSE(e.is_contiguous());
  CHECK(e.at({1, 2, 3}) == 3.0f);
  CHECK(e.at({0, 1, 0}) == 2.0f);
  // Every element of a row reads the same storage element: a write shows everywhere.
  col.set({0, 0}, 10.0f);
  CHECK(e.at({1, 0, 3}) == 10.0f);
  CHECK(col.expand({-1, 2}).shape() == Shape{3, 2});  // -1 keeps the existing size
  CHECK(col.expand({-1, 2}).to_vector() == Floats{10, 10, 2, 2, 3, 3});

  REQUIRE_THROWS_MENTIONING(col.expand({3, 4}).expand({2, 4}), "expand", "(3, 4)", "(2, 4)");
  REQUIRE_THROWS_MENTIONING(col.expand({4}), "expand", "(3, 1)", "(4,)");
  REQUIRE_THROWS_MENTIONING(col.expand({-1, 3, 1}), "expand", "-1");
  REQUIRE_THROWS_MENTIONING(col.expand({3, -2}), "expand", "invalid size -2");
}

TEST_CASE("contiguous() copies only when needed; to_vector reads views in logical order",
          "[ch01][views]") {
  Tensor m = counting({2, 3});
  Tensor same = m.contiguous();
  CHECK(same.shares_storage_with(m));  // already contiguous: the same tensor
  CHECK(same.impl() == m.impl());

  Tensor tt = m.t();
  Tensor c = tt.contiguous();
  CHECK_FALSE(c.shares_storage_with(m));
  CHECK(c.is_contiguous());
  CHECK(c.shape() == Shape{3, 2});
  CHECK(c.strides() == Shape{2, 1});
  // The copy holds tt's values in row-major order of tt: [[0, 3], [1, 4], [2, 5]].
  CHECK(c.to_vector() == Floats{0, 3, 1, 4, 2, 5});
  CHECK(tt.to_vector() == Floats{0, 3, 1, 4, 2, 5});  // to_vector walks the view itself

  // A size-1 dim may have any stride and still be contiguous.
  CHECK(as_strided(m, {1, 3}, {999, 1}, 0).is_contiguous());
  // A column of a matrix (stride 4) is not.
  CHECK_FALSE(m.select(1, 0).is_contiguous());
  // A slice with a step is not contiguous; contiguous() packs it.
  Tensor stepped = counting({8}).slice(0, 0, 8, 2);
  CHECK_FALSE(stepped.is_contiguous());
  CHECK(stepped.contiguous().to_vector() == Floats{0, 2, 4, 6});
  CHECK(stepped.contiguous().strides() == Shape{1});
  // A 0-d tensor and an empty tensor are contiguous.
  CHECK(scalar_tensor(1.0f).is_contiguous());
  CHECK(zeros({0, 3}).is_contiguous());
}

TEST_CASE("as_strided reads storage with any layout and checks its bounds", "[ch01]") {
  Tensor x = counting({6});
  // Overlapping windows: rows start one element apart.
  Tensor windows = as_strided(x, {4, 3}, {1, 1}, 0);
  CHECK(windows.to_vector() == Floats{0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5});
  CHECK(windows.shares_storage_with(x));
  // The last element would be at 1 + 3*1 + 2*1 = 6, past the end of 6 elements.
  REQUIRE_THROWS_MENTIONING(as_strided(x, {2, 3}, {3, 1}, 1), "as_strided", "(2, 3)",
                            "offset 1", "storage of 6 elements");
  REQUIRE_THROWS_MENTIONING(as_strided(x, {2}, {1}, -1), "as_strided", "outside");
  REQUIRE_THROWS_MENTIONING(as_strided(x, {2, 3}, {1}, 0), "as_strided", "different lengths");
  REQUIRE_THROWS_MENTIONING(as_strided(x, {-1}, {1}, 0), "as_strided", "negative size", "(-1,)");
  CHECK(as_strided(x, {0, 5}, {5, 1}, 100).numel() == 0);  // no element, nothing to check
  // Negative strides are fine while every element stays inside: read backwards.
  CHECK(as_strided(x, {3}, {-2}, 5).to_vector() == Floats{5, 3, 1});
}

// --- broadcasting ---

TEST_CASE("broadcast_shapes follows NumPy's rule and names the op and both shapes", "[ch01][broadcast]") {
  // Align at the right; each pair must be equal or contain a 1.
  CHECK(broadcast_shapes({4, 1, 3}, {5, 1}, "add") == Shape{4, 5, 3});
  CHECK(broadcast_shapes({3, 1}, {1, 4}, "add") == Shape{3, 4});
  CHECK(broadcast_shapes({}, {2, 3}, "add") == Shape{2, 3});  // a 0-d tensor broadcasts anywhere
  CHECK(broadcast_shapes({2, 3}, {2, 3}, "add") == Shape{2, 3});
  CHECK(broadcast_shapes({1}, {0}, "add") == Shape{0});
  REQUIRE_THROWS_MENTIONING(broadcast_shapes({2, 3}, {4}, "mul"), "mul", "(2, 3)", "(4,)",
                            "cannot be broadcast");
  REQUIRE_THROWS_MENTIONING(broadcast_shapes({2, 1}, {3, 5, 4}, "sub"), "sub", "(2, 1)",
                            "(3, 5, 4)", "size 2 vs 5");
}

TEST_CASE("broadcast_strides gives stride 0 to new and stretched dims", "[ch01][broadcast]") {
  // (3, 1) with strides (1, 1) read as (2, 3, 4): new dim 0 and stretched dim 2 get 0.
  CHECK(broadcast_strides({3, 1}, {1, 1}, {2, 3, 4}, "add") == Shape{0, 1, 0});
  CHECK(broadcast_strides({}, {}, {2, 2}, "add") == Shape{0, 0});
  CHECK(broadcast_strides({2, 3}, {3, 1}, {2, 3}, "add") == Shape{3, 1});
  REQUIRE_THROWS_MENTIONING(broadcast_strides({3}, {1}, {2, 4}, "where"), "where", "(3,)", "(2, 4)");
  REQUIRE_THROWS_MENTIONING(broadcast_strides({2, 3}, {3, 1}, {3}, "where"), "where", "(2, 3)", "(3,)");

  // for_each_offset walks the broadcast shape: row i of a (3, 1) column
  // meets column j of a (4,) row, as in an outer sum a[i] + b[j].
  const Shape shape = {3, 4};
  const Shape sa = broadcast_strides({3, 1}, {1, 1}, shape, "outer");
  const Shape sb = broadcast_strides({4}, {1}, shape, "outer");
  const Floats a = {100, 200, 300}, b = {1, 2, 3, 4};
  Floats out;
  for_each_offset<2>(shape, {&sa, &sb}, {0, 0}, [&](const std::array<int64_t, 2>& o) {
    out.push_back(a[static_cast<size_t>(o[0])] + b[static_cast<size_t>(o[1])]);
  });
  CHECK(out == Floats{101, 102, 103, 104, 201, 202, 203, 204, 301, 302, 303, 304});
}

TEST_CASE("for_each_offset visits every index in row-major order", "[ch01]") {
  // A (2, 3) walk over a transposed layout (strides (1, 2)) with start 10:
  // offsets 10 + i + 2 j for (i, j) = (0,0) (0,1) (0,2) (1,0) (1,1) (1,2).
  const Shape strides = {1, 2};
  std::vector<int64_t> seen;
  for_each_offset<1>({2, 3}, {&strides}, {10}, [&](const std::array<int64_t, 1>& o) { seen.push_back(o[0]); });
  CHECK(seen == std::vector<int64_t>{10, 12, 14, 11, 13, 15});
  // A 0-d shape has one element (at the start); an empty shape has none.
  const Shape none;
  seen.clear();
  for_each_offset<1>({}, {&none}, {7}, [&](const std::array<int64_t, 1>& o) { seen.push_back(o[0]); });
  CHECK(seen == std::vector<int64_t>{7});
  const Shape s2 = {1, 1};
  seen.clear();
  for_each_offset<1>({3, 0}, {&s2}, {0}, [&](const std::array<int64_t, 1>& o) { seen.push_back(o[0]); });
  CHECK(seen.empty());
}

// --- factories ---

TEST_CASE("factories: zeros, ones, full, scalar_tensor, *_like, empty", "[ch01][factories]") {
  CHECK(zeros({2, 2}).to_vector() == Floats{0, 0, 0, 0});
  CHECK(ones({3}).to_vector() == Floats{1, 1, 1});
  Tensor f = full({2, 3}, 2.5f);
  CHECK(f.shape() == Shape{2, 3});
  CHECK(f.to_vector() == Floats(6, 2.5f));
  Tensor s = scalar_tensor(-4.0f);
  CHECK(s.dim() == 0);
  CHECK(s.shape() == Shape{});
  CHECK(s.numel() == 1);
  CHECK(s.item() == -4.0f);
  CHECK(zeros_like(f).shape() == Shape{2, 3});
  CHECK(zeros_like(f).to_vector() == Floats(6, 0.0f));
  CHECK(ones_like(f.t()).shape() == Shape{3, 2});
  CHECK(ones_like(f.t()).is_contiguous());
  Tensor e = zeros({2}, DType::Int64);
  CHECK(e.dtype() == DType::Int64);
  CHECK(e.to_index_vector() == std::vector<int64_t>{0, 0});  // empty() is zero-filled
  REQUIRE_THROWS_MENTIONING(zeros({2, -1}), "negative size", "(2, -1)");
}

TEST_CASE("arange, both forms", "[ch01][factories]") {
  CHECK(arange(4).to_vector() == Floats{0, 1, 2, 3});
  CHECK(arange(4).shape() == Shape{4});
  CHECK(arange(0).numel() == 0);
  // (start, end, step): end excluded, count = ceil((end - start) / step).
  CHECK(arange(1.0f, 2.0f, 0.25f).to_vector() == Floats{1.0f, 1.25f, 1.5f, 1.75f});
  CHECK(arange(2.0f, 5.0f).to_vector() == Floats{2, 3, 4});
  CHECK(arange(5.0f, 0.0f, -2.0f).to_vector() == Floats{5, 3, 1});  // ceil(-5 / -2) = 3
  CHECK(arange(3.0f, 1.0f).numel() == 0);                             // going the wrong way: empty
  REQUIRE_THROWS_MENTIONING(arange(0.0f, 1.0f, 0.0f), "arange", "step must not be zero");
}

TEST_CASE("from_vector and from_indices fill a shape; a wrong count is an error", "[ch01][factories]") {
  Tensor t = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.at({1, 0}) == 4.0f);
  CHECK(from_vector({7}, {}).item() == 7.0f);
  REQUIRE_THROWS_MENTIONING(from_vector({1, 2, 3, 4, 5}, {2, 3}), "from_vector", "5 values",
                            "(2, 3)", "6 elements");

  Tensor ids = from_indices({3, 1, 4, 1}, {2, 2});
  CHECK(ids.dtype() == DType::Int64);
  CHECK(ids.index_at({1, 0}) == 4);
  CHECK(ids.index_at({-1, -1}) == 1);
  CHECK(ids.to_index_vector() == std::vector<int64_t>{3, 1, 4, 1});
  CHECK(ids.t().to_index_vector() == std::vector<int64_t>{3, 4, 1, 1});
  REQUIRE_THROWS_MENTIONING(from_indices({1, 2}, {3}), "from_indices", "2 values", "(3,)");
  // The dtypes do not mix: float accessors refuse an int64 tensor and vice versa.
  REQUIRE_THROWS_MENTIONING(ids.at({0, 0}), "at", "float32", "int64");
  REQUIRE_THROWS_MENTIONING(t.index_at({0, 0}), "index_at", "int64", "float32");
  REQUIRE_THROWS_MENTIONING(ids.to_vector(), "to_vector", "int64");
  REQUIRE_THROWS_MENTIONING(ids.data(), "data", "int64");
}

TEST_CASE("Generator: the same seed gives the same numbers", "[ch01][random]") {
  Generator a(42), b(42), c(43);
  const uint64_t first = a.next_u64();
  CHECK(first == b.next_u64());
  CHECK(first != c.next_u64());
  // The whole state is one number: saving and restoring it replays the stream.
  const uint64_t saved = a.state();
  const float u = a.uniform();
  a.set_state(saved);
  CHECK(a.uniform() == u);
  // randint stays in [0, n) and, over 200 draws, hits both ends.
  Generator g(7);
  int64_t lowest = 5, highest = -1;
  for (int i = 0; i < 200; ++i) {
    const int64_t k = g.randint(5);
    lowest = std::min(lowest, k);
    highest = std::max(highest, k);
  }
  CHECK(lowest == 0);
  CHECK(highest == 4);
  REQUIRE_THROWS_MENTIONING(g.randint(0), "randint", "positive");

  Generator g1(2024), g2(2024), g3(2025);
  const Tensor x1 = randn({4, 5}, g1);
  const Tensor x2 = randn({4, 5}, g2);
  const Tensor x3 = randn({4, 5}, g3);
  CHECK(x1.to_vector() == x2.to_vector());
  CHECK(x1.to_vector() != x3.to_vector());
  // The generator moved on: the next draw differs from the first.
  CHECK(randn({4, 5}, g1).to_vector() != x1.to_vector());
  Generator r1(5), r2(5);
  CHECK(rand({10}, r1).to_vector() == rand({10}, r2).to_vector());
}

TEST_CASE("randn is roughly N(0, 1) and rand is in [0, 1)", "[ch01][random]") {
  // Over n = 10,000 samples the sample mean has standard error 1/sqrt(n) = 0.01,
  // so 0.05 is five standard errors; the sample std is within a few percent of 1.
  Generator gen(123);
  const Floats normal = randn({100, 100}, gen).to_vector();
  double sum = 0.0, sum_sq = 0.0;
  for (float v : normal) {
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(normal.size());
  const double mean = sum / n;
  const double stddev = std::sqrt(sum_sq / n - mean * mean);
  CHECK(std::fabs(mean) < 0.05);
  CHECK(std::fabs(stddev - 1.0) < 0.05);
  // About 68.3% of a normal lies within one standard deviation.
  int64_t within = 0;
  for (float v : normal) within += std::fabs(v) < 1.0f ? 1 : 0;
  CHECK(std::fabs(static_cast<double>(within) / n - 0.683) < 0.02);

  const Floats uniform = rand({10000}, gen).to_vector();
  double usum = 0.0;
  float lo = 1.0f, hi = 0.0f;
  for (float v : uniform) {
    usum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo >= 0.0f);
  CHECK(hi < 1.0f);
  CHECK(lo < 0.01f);  // and it does reach both ends
  CHECK(hi > 0.99f);
  CHECK(std::fabs(usum / n - 0.5) < 0.01);  // std error of the mean: sqrt(1/12)/100 = 0.003
}

// --- element access ---

TEST_CASE("at, set and item: negative indices and errors", "[ch01]") {
  Tensor t = counting({2, 3});
  CHECK(t.at({-1, -1}) == 5.0f);
  CHECK(t.at({-2, 1}) == 1.0f);
  t.set({-1, 0}, 30.0f);
  CHECK(t.at({1, 0}) == 30.0f);
  REQUIRE_THROWS_MENTIONING(t.at({2, 0}), "at", "index 2", "dim 0", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(t.at({0, -4}), "at", "index -4", "dim 1");
  REQUIRE_THROWS_MENTIONING(t.set({0, 3}, 1.0f), "set", "index 3");
  REQUIRE_THROWS_MENTIONING(t.at({1}), "at", "1 indices", "(2, 3)");

  CHECK(scalar_tensor(2.5f).item() == 2.5f);
  CHECK(full({1, 1, 1}, 8.0f).item() == 8.0f);
  CHECK(t.slice(1, 2, 3).slice(0, 1, 2).item() == 5.0f);  // a one-element view
  REQUIRE_THROWS_MENTIONING(t.item(), "item", "one-element", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(zeros({0}).item(), "item", "(0,)");
}

// --- copying and comparing ---

TEST_CASE("copy_into writes through a view and broadcasts its source", "[ch01]") {
  Tensor m = zeros({3, 4});
  // Fill column 1 with 7 (a broadcast 0-d source) ...
  copy_into(m.select(1, 1), scalar_tensor(7.0f));
  // ... and rows 1..2 of columns 2..3 with a (2,) row broadcast over both rows.
  copy_into(m.slice(0, 1, 3).slice(1, 2, 4), from_vector({5, 6}, {2}));
  CHECK(m.to_vector() == Floats{0, 7, 0, 0,  //
                                0, 7, 5, 6,  //
                                0, 7, 5, 6});
  // A non-contiguous source is read in logical order: a transposed (2, 2) block.
  Tensor block = from_vector({1, 2, 3, 4}, {2, 2});
  Tensor dst = zeros({2, 2});
  copy_into(dst, block.t());
  CHECK(dst.to_vector() == Floats{1, 3, 2, 4});
  REQUIRE_THROWS_MENTIONING(copy_into(zeros({2, 3}), zeros({2})), "copy_into", "(2,)", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(copy_into(zeros({2}), from_indices({1, 2}, {2})), "copy_into",
                            "int64", "float32");
  Tensor ids = zeros({3}, DType::Int64);
  copy_into(ids, from_indices({4, 5, 6}, {3}).slice(0, 0, 3));
  CHECK(ids.to_index_vector() == std::vector<int64_t>{4, 5, 6});

  // copy_to_contiguous packs any view into a fresh row-major tensor.
  Tensor packed = copy_to_contiguous(counting({2, 3}).t());
  CHECK(packed.is_contiguous());
  CHECK(packed.to_vector() == Floats{0, 3, 1, 4, 2, 5});
}

TEST_CASE("allclose and max_abs_diff", "[ch01]") {
  Tensor a = from_vector({1.0f, 2.0f, 100.0f}, {3});
  Tensor b = from_vector({1.0f, 2.5f, 100.5f}, {3});
  CHECK(max_abs_diff(a, b) == 0.5f);
  CHECK(max_abs_diff(a, a) == 0.0f);
  CHECK_FALSE(allclose(a, b));
  // |a - b| <= atol + rtol * |b|: 0.5 <= 0 + 0.25 * 2.5 = 0.625 and 0.5 <= 0.25 * 100.5.
  CHECK(allclose(a, b, 0.25f, 0.0f));
  // With rtol 0.1 the middle element fails: 0.5 > 0.1 * 2.5 = 0.25.
  CHECK_FALSE(allclose(a, b, 0.1f, 0.0f));
  CHECK(allclose(a, b, 0.0f, 0.5f));  // atol alone: every difference is at most 0.5
  // Views are compared in logical order.
  CHECK(allclose(counting({2, 3}).t(), from_vector({0, 3, 1, 4, 2, 5}, {3, 2})));

  // A NaN anywhere makes the tensors differ by NaN and never allclose.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor with_nan = from_vector({1.0f, nan, 100.0f}, {3});
  CHECK(std::isnan(max_abs_diff(a, with_nan)));
  CHECK(std::isnan(max_abs_diff(with_nan, a)));
  CHECK_FALSE(allclose(with_nan, with_nan));
  CHECK_FALSE(allclose(a, with_nan, 1.0f, 1000.0f));

  REQUIRE_THROWS_MENTIONING(allclose(a, zeros({2})), "allclose", "(3,)", "(2,)");
  REQUIRE_THROWS_MENTIONING(max_abs_diff(a, zeros({3, 1})), "max_abs_diff", "(3,)", "(3, 1)");
}

// --- printing ---

TEST_CASE("printing a small 2-D tensor, a 0-d tensor and an int64 tensor", "[ch01][print]") {
  // Every number gets 4 decimals and the width of the widest one, so columns line up.
  CHECK(from_vector({1, -2.5f, 0, 3}, {2, 2}).to_string() ==
        "tensor([[ 1.0000, -2.5000],\n"
        "        [ 0.0000,  3.0000]], shape=(2, 2))");
  CHECK(scalar_tensor(3.5f).to_string() == "tensor(3.5000, shape=())");
  CHECK(from_indices({1, -2, 30, 4}, {2, 2}).to_string() ==
        "tensor([[ 1, -2],\n"
        "        [30,  4]], shape=(2, 2), dtype=int64)");
  CHECK(arange(3).to_string() == "tensor([0.0000, 1.0000, 2.0000], shape=(3,))");
  // A view prints its own logical values.
  CHECK(from_vector({1, 2, 3, 4}, {2, 2}).t().to_string() ==
        "tensor([[1.0000, 3.0000],\n"
        "        [2.0000, 4.0000]], shape=(2, 2))");
  // 3-D: a blank line between the 2-D blocks.
  CHECK(zeros({2, 1, 2}).to_string() ==
        "tensor([[[0.0000, 0.0000]],\n"
        "\n"
        "        [[0.0000, 0.0000]]], shape=(2, 1, 2))");
  // Very large or very small magnitudes switch to scientific notation.
  CHECK(from_vector({1e6f, 2.0f}, {2}).to_string() == "tensor([1.0000e+06, 2.0000e+00], shape=(2,))");
  CHECK(zeros({0}).to_string() == "tensor([], shape=(0,))");
  std::ostringstream os;
  os << scalar_tensor(-1.0f);
  CHECK(os.str() == "tensor(-1.0000, shape=())");
}

TEST_CASE("printing a long tensor elides the middle with ...", "[ch01][print]") {
  // 40 x 50 = 2000 elements, more than the 1000 printed in full: the first and
  // last 3 rows and columns are shown.
  const std::string s = counting({40, 50}).to_string();
  INFO(s);
  CHECK(contains(s, "shape=(40, 50)"));
  CHECK(contains(s, "..."));
  // First row: 0 1 2 ... 47 48 49, all padded to the width of "1999.0000".
  CHECK(contains(s, "tensor([[   0.0000,    1.0000,    2.0000, ...,   47.0000,   48.0000,   49.0000],"));
  // The last row starts at 39 * 50 = 1950.
  CHECK(contains(s, "[1950.0000, 1951.0000, 1952.0000, ..., 1997.0000, 1998.0000, 1999.0000]], shape=(40, 50))"));
  CHECK(contains(s, "\n        ...,\n"));  // the elided rows
  CHECK_FALSE(contains(s, "1000.0000"));  // row 20 is not shown
  CHECK_FALSE(contains(s, "25.0000,"));   // neither is column 25
  // 3 rows + "..." + 3 rows: 7 lines.
  CHECK(std::count(s.begin(), s.end(), '\n') == 6);
  // Up to 1000 elements everything is printed.
  CHECK_FALSE(contains(counting({20, 50}).to_string(), "..."));
}
