// A program for checking the gdb pretty-printer (tests/gdb/attend_printers.py,
// docs/01-tensors.md): tensors of every kind the printer must show, then a
// call where tests/gdb/check.sh stops to print them. Built with -O0 -g by
// `make check-gdb`.
#include "attend/attend.hpp"

namespace {

// gdb stops here; the tensors are in main's frame (`up`).
[[gnu::noinline]] void look_here(const attend::Tensor& t) { asm volatile("" : : "r"(&t) : "memory"); }

}  // namespace

int main() {
  const attend::Tensor x = attend::arange(6).reshape({2, 3});  // 0 1 2 / 3 4 5
  const attend::Tensor xt = x.t();                            // a view: strides (1, 3)
  const attend::Tensor row = x.select(0, 1);                  // offset 3
  const attend::Tensor w = attend::full({3}, 0.5f).set_requires_grad().set_name("w");
  const attend::Tensor y = attend::mul(w, w);                 // made by an op: grad_fn mul
  const attend::Tensor big = attend::arange(20);              // only the first values are shown
  const attend::Tensor ids = attend::from_indices({3, 1, 4}, {3});
  const attend::Tensor none;
  look_here(x);
  return 0;
}
