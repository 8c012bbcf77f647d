// Tutorial 01: what a tensor is -- a flat storage read through a shape,
// strides and an offset -- and how views, broadcasting and printing follow.
// Chapter 1 (docs/01-tensors.md). Build and run:
//   make tutorials && build/tutorials/01-tensors
#include <cstdio>
#include <iostream>
#include <string>

#include "attend/attend.hpp"

using attend::Shape;
using attend::Tensor;

// One line with everything that decides where an element lives.
static void show_layout(const std::string& label, const Tensor& t) {
  std::printf("%-24s shape=%-10s strides=%-11s offset=%lld  contiguous=%s\n", label.c_str(),
              attend::to_string(t.shape()).c_str(), attend::to_string(t.strides()).c_str(),
              static_cast<long long>(t.offset()), t.is_contiguous() ? "yes" : "no");
}

static const char* yes_no(bool b) { return b ? "yes" : "no"; }

int main() {
  std::cout << "== 1. A tensor is a flat storage plus shape, strides and offset\n\n";
  // arange(12) fills a storage with 0, 1, ..., 11; reshape reads it as 3 rows of 4.
  Tensor x = attend::arange(12).reshape({3, 4});
  std::cout << "x =\n" << x << "\n";
  show_layout("x", x);
  // Element (i, j) lives at storage[offset + i*strides[0] + j*strides[1]].
  std::printf("x[1][2] = storage[%lld + 1*%lld + 2*%lld] = storage[%lld] = %.0f\n\n",
              static_cast<long long>(x.offset()), static_cast<long long>(x.strides()[0]),
              static_cast<long long>(x.strides()[1]),
              static_cast<long long>(x.offset() + 1 * x.strides()[0] + 2 * x.strides()[1]),
              x.at({1, 2}));

  std::cout << "== 2. Transpose swaps two strides; no number moves\n\n";
  Tensor xt = x.t();
  std::cout << "x.t() =\n" << xt << "\n";
  show_layout("x.t()", xt);
  std::printf("shares storage with x: %s\n", yes_no(xt.shares_storage_with(x)));
  std::printf("x.t()[2][1] = %.0f, the same element as x[1][2] = %.0f\n", xt.at({2, 1}),
              x.at({1, 2}));
  // Reading x.t() row by row jumps through storage (0, 4, 8, 1, 5, ...): that
  // is what "not contiguous" means. Writing through a view changes x too.
  xt.set({2, 1}, 60.0f);
  std::printf("after x.t()[2][1] = 60: x[1][2] = %.0f\n", x.at({1, 2}));
  xt.set({2, 1}, 6.0f);
  // permute reorders any number of dims the same way: it reorders the strides.
  Tensor cube = attend::arange(24).reshape({2, 3, 4});
  show_layout("cube", cube);
  show_layout("cube.permute({2, 0, 1})", cube.permute({2, 0, 1}));
  std::cout << "\n";

  std::cout << "== 3. reshape: a view when the strides allow it, a copy otherwise\n\n";
  Tensor flat_rows = x.reshape({2, 6});
  show_layout("x.reshape({2, 6})", flat_rows);
  std::printf("  shares storage with x: %s   (only the strides changed)\n",
              yes_no(flat_rows.shares_storage_with(x)));
  Tensor flat_cols = xt.reshape({12});
  show_layout("x.t().reshape({12})", flat_cols);
  std::printf("  shares storage with x: %s    (no single stride walks 0, 4, 8, 1, 5, ...)\n",
              yes_no(flat_cols.shares_storage_with(x)));
  std::cout << "  values: " << flat_cols << "\n";
  try {
    xt.view({12});  // view() never copies, so it refuses
  } catch (const attend::Error& e) {
    std::cout << "  x.t().view({12}) throws: " << e.what() << "\n";
  }
  std::cout << "\n";

  std::cout << "== 4. Slicing with a step multiplies the stride and moves the offset\n\n";
  Tensor even_cols = x.slice(1, 0, 4, 2);  // columns 0 and 2
  std::cout << "x.slice(1, 0, 4, 2) =\n" << even_cols << "\n";
  show_layout("x.slice(1, 0, 4, 2)", even_cols);
  Tensor last_rows = x.slice(0, 1, 3);  // rows 1 and 2: start at element 4
  show_layout("x.slice(0, 1, 3)", last_rows);
  Tensor row = x.select(0, 2);  // row 2 as a 1-d tensor
  show_layout("x.select(0, 2)", row);
  std::cout << "x.select(0, 2) = " << row << "\n\n";

  std::cout << "== 5. expand repeats a size-1 dim with stride 0\n\n";
  Tensor column = attend::from_vector({10, 20, 30}, {3, 1});
  Tensor wide = column.expand({3, 4});
  std::cout << "column =\n" << column << "\n";
  std::cout << "column.expand({3, 4}) =\n" << wide << "\n";
  show_layout("column.expand({3, 4})", wide);
  std::printf("12 elements, but the storage still holds %zu floats: stride 0 reads the same "
              "one 4 times\n\n",
              wide.impl()->storage->floats.size());

  std::cout << "== 6. Broadcasting: sizes align at the right; a 1 stretches to match\n\n";
  Tensor a = attend::from_vector({1, 2, 3}, {3, 1});
  Tensor b = attend::from_vector({10, 20, 30, 40}, {1, 4});
  Tensor c = a + b;  // a is read as a.expand({3, 4}), b as b.expand({3, 4})
  std::printf("%s + %s -> %s\n", attend::to_string(a.shape()).c_str(),
              attend::to_string(b.shape()).c_str(), attend::to_string(c.shape()).c_str());
  std::cout << "a + b =\n" << c << "\n";
  std::printf("broadcast_shapes((4, 1, 3), (5, 1)) = %s\n",
              attend::to_string(attend::broadcast_shapes({4, 1, 3}, {5, 1}, "demo")).c_str());
  try {
    attend::from_vector({1, 2, 3}, {3}) + attend::from_vector({1, 2, 3, 4}, {4});
  } catch (const attend::Error& e) {
    std::cout << "(3) + (4) throws: " << e.what() << "\n";
  }
  std::cout << "\n";

  std::cout << "== 7. Random numbers come from an explicit seed\n\n";
  attend::Generator gen(42);
  Tensor r1 = attend::randn({2, 3}, gen);
  attend::Generator same_seed(42);
  Tensor r2 = attend::randn({2, 3}, same_seed);
  std::cout << "randn({2, 3}) with seed 42 =\n" << r1 << "\n";
  std::printf("again with seed 42, the same numbers: %s\n\n",
              yes_no(attend::max_abs_diff(r1, r2) == 0.0f));

  std::cout << "== 8. Long tensors print their corners only\n\n";
  Tensor big = attend::arange(2000).reshape({40, 50});
  std::cout << "arange(2000).reshape({40, 50}) has more than 1000 elements, so:\n" << big << "\n";
  return 0;
}
