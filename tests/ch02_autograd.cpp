// Tests for chapter 2, Autograd (docs/02-autograd.md): recording the graph,
// backward in reverse topological order (no recursion), accumulation,
// no_grad and detach, freeing the graph, broadcast gradients, gradcheck
// (including a deliberately wrong backward it must catch) and DOT drawings.
// Graphs are built with the simplest ops only: add, mul, sum.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "attend/autograd.hpp"
#include "attend/dot.hpp"
#include "attend/gradcheck.hpp"
#include "attend/ops.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"
#include "test_tensors.hpp"

using namespace attend;
using attend_test::contains;
using attend_test::leaf;

namespace {

using Floats = std::vector<float>;
using Grads = std::vector<Tensor>;

size_t count_of(const std::string& text, const std::string& fragment) {
  size_t n = 0;
  for (size_t at = text.find(fragment); at != std::string::npos; at = text.find(fragment, at + 1)) ++n;
  return n;
}

// --- custom ops for gradcheck, built from chapter 1 code and record_op ---

// x^2 element by element, computed without any recorded op.
Tensor squared_values(const Tensor& x) {
  Floats v = x.to_vector();
  for (float& e : v) e = e * e;
  return from_vector(v, x.shape());
}

// x^2 with the right backward: d(x^2)/dx = 2x.
Tensor good_square(const Tensor& x) {
  Tensor out = squared_values(x);
  record_op("good_square", out, {x}, [x](const Tensor& g) { return Grads{mul(mul(g, x), 2.0f)}; });
  return out;
}

// x^2 with a WRONG backward on purpose: it claims d(x^2)/dx = 3x.
Tensor bad_square(const Tensor& x) {
  Tensor out = squared_values(x);
  record_op("bad_square", out, {x}, [x](const Tensor& g) { return Grads{mul(mul(g, x), 3.0f)}; });
  return out;
}

// Transpose of a (2, 3) matrix into a new (3, 2) tensor, with a WRONG
// backward: it reshapes the (3, 2) gradient to (2, 3) instead of transposing
// it. The shape is right, the positions are not.
Tensor bad_transpose(const Tensor& x) {
  Tensor out = copy_to_contiguous(x.detach().t());
  record_op("bad_transpose", out, {x}, [](const Tensor& g) { return Grads{g.reshape({2, 3})}; });
  return out;
}

// a * b (same shapes), whose backward is right for a but has the wrong sign for b.
Tensor bad_product(const Tensor& a, const Tensor& b) {
  Floats va = a.to_vector();
  const Floats vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i) va[i] *= vb[i];
  Tensor out = from_vector(va, a.shape());
  record_op("bad_product", out, {a, b}, [a, b](const Tensor& g) {
    return Grads{mul(g, b), mul(mul(g, a), -1.0f)};  // should be +g*a
  });
  return out;
}

}  // namespace

// --- recording ---

TEST_CASE("requires_grad, is_leaf and grad_fn: what an op records", "[ch02]") {
  Tensor x = from_vector({1, 2, 3}, {3});
  CHECK_FALSE(x.requires_grad());  // off by default
  CHECK(x.is_leaf());
  CHECK_FALSE(x.grad().defined());
  Tensor same = x.set_requires_grad();  // returns the handle, for chaining
  CHECK(same.impl() == x.impl());
  CHECK(x.requires_grad());
  CHECK(x.is_leaf());  // a tensor the user made is a leaf, with or without grad
  CHECK(x.grad_fn() == nullptr);

  Tensor c = from_vector({4, 5, 6}, {3});
  Tensor y = mul(x, c);  // one input requires grad: the op is recorded
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->op == "mul");
  REQUIRE(y.grad_fn()->inputs.size() == 2);
  // Edges lead back to the inputs' autograd fields (x's), and keep shapes, not values.
  CHECK(y.grad_fn()->inputs[0].autograd == x.impl()->autograd);
  CHECK(y.grad_fn()->inputs[0].requires_grad());
  CHECK(y.grad_fn()->inputs[0].shape == Shape{3});
  CHECK_FALSE(y.grad_fn()->inputs[1].requires_grad());  // c is a constant: no autograd fields
  CHECK(y.grad_fn()->inputs[1].autograd == nullptr);
  CHECK_FALSE(y.grad().defined());  // a non-leaf keeps no grad unless asked to

  Tensor plain = mul(c, c);  // no input requires grad: nothing is recorded
  CHECK_FALSE(plain.requires_grad());
  CHECK(plain.is_leaf());
  CHECK(plain.grad_fn() == nullptr);

  // Only leaves can be switched, and only float32 tensors can require grad.
  REQUIRE_THROWS_MENTIONING(y.set_requires_grad(false), "set_requires_grad", "only leaf",
                            "'mul'", "detach()");
  REQUIRE_THROWS_MENTIONING(from_indices({1}, {1}).set_requires_grad(), "set_requires_grad",
                            "float32", "int64");
  x.set_requires_grad(false);
  CHECK_FALSE(x.requires_grad());
  CHECK_FALSE(mul(x, c).requires_grad());

  // Printing shows the autograd state.
  Tensor w = leaf({1, 2}, {2});
  CHECK(w.to_string() == "tensor([1.0000, 2.0000], shape=(2,), requires_grad=true)");
  CHECK(mul(w, 2.0f).to_string() == "tensor([2.0000, 4.0000], shape=(2,), grad_fn=<mul>)");
}

// --- backward ---

TEST_CASE("the graph keeps shapes, not values: a tensor no backward needs is freed after the forward", "[ch02]") {
  Tensor x = leaf({1, 2, 3}, {3});
  std::weak_ptr<Storage> middle_values;  // watches the values without keeping them
  Tensor y;
  {
    Tensor middle = add(x, 1.0f);  // add's backward needs no values
    middle_values = middle.impl()->storage;
    y = sum(add(middle, 1.0f));
  }
  CHECK(middle_values.expired());  // the graph kept only its edge: autograd fields and shape
  y.backward();
  CHECK(x.grad().to_vector() == Floats{1, 1, 1});

  // mul's backward needs both of its inputs: it saves them until backward().
  std::weak_ptr<Storage> saved_values;
  Tensor z;
  {
    Tensor middle = add(x, 1.0f);
    saved_values = middle.impl()->storage;
    z = sum(mul(middle, middle));
  }
  CHECK_FALSE(saved_values.expired());
  z.backward();  // d/dx sum((x+1)^2) = 2 (x + 1), added to the 1s above
  CHECK(x.grad().to_vector() == Floats{5, 7, 9});
  CHECK(saved_values.expired());  // freed with the graph
}

TEST_CASE("backward on a scalar applies the chain rule", "[ch02]") {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor c = from_vector({10, 20, 30}, {3});
  // L = sum(x * x + c * x): dL/dx_i = 2 x_i + c_i = 12, 24, 36.
  Tensor loss = sum(add(mul(x, x), mul(c, x)));
  CHECK(loss.dim() == 0);
  CHECK(loss.item() == 1 + 4 + 9 + 10 + 40 + 90);  // 154
  loss.backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == Shape{3});
  CHECK(x.grad().to_vector() == Floats{12, 24, 36});
  CHECK_FALSE(c.grad().defined());  // c does not require grad
  CHECK(x.grad().is_contiguous());

  // backward() on a one-element tensor that is not 0-d works too: seed 1.
  Tensor s = leaf({2}, {1});
  mul(s, s).backward();  // d(s^2)/ds = 2s = 4
  CHECK(s.grad().to_vector() == Floats{4});
  // ... and on a leaf itself: dx/dx = 1.
  Tensor t = leaf({5}, {});
  t.backward();
  CHECK(t.grad().item() == 1.0f);
}

TEST_CASE("backward with an explicit output gradient", "[ch02]") {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = mul(x, x);  // (2, 2): not a scalar, so backward needs dL/dy
  Tensor dy = from_vector({1, 0.5f, -1, 0}, {2, 2});
  y.backward(dy);
  // dL/dx = dL/dy * dy/dx = dy * 2x = [2*1*1, 0.5*2*2, -1*2*3, 0*2*4].
  CHECK(x.grad().to_vector() == Floats{2, 2, -6, 0});
  // The stored gradient is a fresh tensor, not the one passed in.
  Tensor seed = from_vector({1, 1, 1, 1}, {2, 2});
  Tensor z = leaf({0, 0, 0, 0}, {2, 2});
  add(z, 1.0f).backward(seed);  // add passes the gradient straight through
  CHECK_FALSE(z.grad().shares_storage_with(seed));
  seed.set({0, 0}, 100.0f);
  CHECK(z.grad().at({0, 0}) == 1.0f);
}

TEST_CASE("backward errors: not a scalar, wrong gradient shape, nothing requires grad", "[ch02]") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = mul(x, 2.0f);
  REQUIRE_THROWS_MENTIONING(y.backward(), "backward", "(2, 3)", "not a scalar");
  REQUIRE_THROWS_MENTIONING(y.backward(ones({3, 2})), "backward", "(3, 2)", "(2, 3)");
  REQUIRE_THROWS_MENTIONING(y.backward(from_indices({1, 1, 1, 1, 1, 1}, {2, 3})), "backward",
                            "float32");
  Tensor plain = from_vector({1, 2}, {2});
  REQUIRE_THROWS_MENTIONING(sum(plain).backward(), "backward", "()", "does not require grad");
  REQUIRE_THROWS_MENTIONING(Tensor().backward(), "backward", "undefined");
  CHECK_FALSE(x.grad().defined());  // none of these got as far as a gradient
}

TEST_CASE("a custom op's backward must return one gradient per input, of a fitting shape", "[ch02]") {
  Tensor a = leaf({1, 2, 3}, {3});
  Tensor b = leaf({1, 2, 3}, {3});
  Tensor too_few = from_vector({1, 2, 3}, {3});
  record_op("too_few", too_few, {a, b}, [](const Tensor& g) { return Grads{g}; });
  REQUIRE_THROWS_MENTIONING(too_few.backward(ones({3})), "backward of 'too_few'", "1 gradients",
                            "2 inputs");
  // A (2,) gradient for a (3,) input cannot be summed back to it: the error names the op.
  Tensor wrong_shape = from_vector({1, 2}, {2});
  record_op("wrong_shape", wrong_shape, {a}, [](const Tensor& g) { return Grads{g}; });
  REQUIRE_THROWS_MENTIONING(wrong_shape.backward(ones({2})), "backward of 'wrong_shape'",
                            "gradient of shape (2,)", "input 0 of shape (3,)");
}

TEST_CASE("gradients accumulate in leaves across backward calls; zero_grad forgets them", "[ch02]") {
  Tensor x = leaf({1, -2}, {2});
  // L = sum(3x): dL/dx = 3 for each element; a fresh graph per call.
  sum(mul(x, 3.0f)).backward();
  CHECK(x.grad().to_vector() == Floats{3, 3});
  sum(mul(x, 3.0f)).backward();
  CHECK(x.grad().to_vector() == Floats{6, 6});  // 3 + 3, as in PyTorch
  sum(mul(x, x)).backward();                    // + 2x = + (2, -4)
  CHECK(x.grad().to_vector() == Floats{8, 2});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(mul(x, 3.0f)).backward();
  CHECK(x.grad().to_vector() == Floats{3, 3});
}

TEST_CASE("a leaf's gradient is an array of its own, never one that another gradient shares", "[ch02]") {
  // The engine keeps a leaf's first gradient without a copy when no other
  // handle or view can see it (run_backward's accumulate); these graphs hand
  // two leaves one gradient, or two views of one array. Each leaf must end
  // up with its own: writing into one .grad must leave the other alone.
  const Tensor c = from_vector({1, 2, 3, 4, 5, 6}, {6});  // makes add's incoming gradient fresh
  const auto check_separate = [](const Tensor& ga, const Tensor& gb, const Floats& expected) {
    REQUIRE(ga.defined());
    REQUIRE(gb.defined());
    CHECK_FALSE(ga.shares_storage_with(gb));
    CHECK(ga.to_vector() == expected);
    CHECK(gb.to_vector() == expected);
    Tensor written = ga;
    written.data()[0] = 100.0f;
    CHECK(gb.to_vector() == expected);
  };
  SECTION("add hands both inputs the same gradient tensor") {
    Tensor x = leaf({1, 1, 1, 1, 1, 1}, {6});
    Tensor y = leaf({2, 2, 2, 2, 2, 2}, {6});
    sum(mul(add(x, y), c)).backward();
    check_separate(x.grad(), y.grad(), {1, 2, 3, 4, 5, 6});
  }
  SECTION("two reshapes hand the two inputs two views of one array") {
    Tensor x = leaf({1, 1, 1, 1, 1, 1}, {2, 3});
    Tensor y = leaf({2, 2, 2, 2, 2, 2}, {3, 2});
    sum(mul(add(x.reshape({6}), y.reshape({6})), c)).backward();
    check_separate(x.grad().reshape({6}), y.grad().reshape({6}), {1, 2, 3, 4, 5, 6});
  }
  SECTION("a retained non-leaf gradient and its leaf's") {
    Tensor x = leaf({1, 1, 1, 1, 1, 1}, {6});
    Tensor y = add(x, 0.0f);
    y.retain_grad();
    sum(mul(y, c)).backward();
    check_separate(x.grad(), y.grad(), {1, 2, 3, 4, 5, 6});
  }
}

TEST_CASE("a tensor used several times receives the sum of its gradients", "[ch02]") {
  SECTION("y = x*x + x gives dy/dx = 2x + 1") {
    Tensor x = leaf({0.5f, -1, 3}, {3});
    sum(add(mul(x, x), x)).backward();
    CHECK(x.grad().to_vector() == Floats{2, -1, 7});
  }
  SECTION("x + x: the same tensor twice in one op") {
    Tensor x = leaf({1, 2}, {2});
    sum(add(x, x)).backward();
    CHECK(x.grad().to_vector() == Floats{2, 2});
  }
  SECTION("a diamond: a = 2x, b = 3x, y = a*b = 6x^2, dy/dx = 12x") {
    Tensor x = leaf({0.5f, -1}, {2});
    Tensor a = mul(x, 2.0f);
    Tensor b = mul(x, 3.0f);
    Tensor y = mul(a, b);
    CHECK(y.to_vector() == Floats{1.5f, 6});
    sum(y).backward();
    CHECK(x.grad().to_vector() == Floats{6, -12});
  }
  SECTION("a longer and a shorter path to the same leaf: y = x * ((x*2)*3) = 6x^2") {
    Tensor x = leaf({1, 2}, {2});
    Tensor deep = mul(mul(x, 2.0f), 3.0f);
    sum(mul(x, deep)).backward();
    CHECK(x.grad().to_vector() == Floats{12, 24});
  }
}

TEST_CASE("retain_grad keeps the gradient of a non-leaf", "[ch02]") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = mul(x, 2.0f);  // y = 2x = (2, 4)
  Tensor u = mul(x, 5.0f);  // a non-leaf that does not retain its grad
  y.retain_grad();
  // L = sum(y*y + u): dL/dy = 2y = (4, 8); dL/dx = 2 * 2y + 5 = 8x + 5 = (13, 21).
  sum(add(mul(y, y), u)).backward();
  REQUIRE(y.grad().defined());
  CHECK(y.grad().to_vector() == Floats{4, 8});
  CHECK(x.grad().to_vector() == Floats{13, 21});
  CHECK_FALSE(u.grad().defined());
}

// --- turning recording off ---

TEST_CASE("NoGradGuard: nothing is recorded while it lives, and nesting restores the mode", "[ch02]") {
  Tensor x = leaf({1, 2}, {2});
  CHECK(grad_enabled());
  CHECK(any_requires_grad({x}));
  {
    NoGradGuard outer;
    CHECK_FALSE(grad_enabled());
    CHECK_FALSE(any_requires_grad({x}));
    Tensor y = mul(x, 3.0f);
    CHECK(y.to_vector() == Floats{3, 6});  // the values are computed as usual
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
    CHECK(y.grad_fn() == nullptr);
    {
      NoGradGuard inner;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());  // leaving the inner guard keeps the outer one's "off"
    CHECK_FALSE(x.unsqueeze(0).requires_grad());  // views are not recorded either
  }
  CHECK(grad_enabled());  // restored
  Tensor z = mul(x, 3.0f);
  CHECK(z.requires_grad());
  CHECK(z.grad_fn()->op == "mul");
  CHECK(x.requires_grad());  // the guard never changes the leaves themselves
}

TEST_CASE("detach shares data but has no history", "[ch02]") {
  Tensor x = leaf({1, 2, 3}, {3});
  x.set_name("x");
  Tensor y = mul(x, 2.0f);
  Tensor d = y.detach();
  CHECK(d.shares_storage_with(y));
  CHECK(d.to_vector() == Floats{2, 4, 6});
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  CHECK(d.grad_fn() == nullptr);
  d.set({0}, -1.0f);  // same storage: the write shows in y
  CHECK(y.at({0}) == -1.0f);
  CHECK(x.detach().name() == "x");
  CHECK(x.detach().shape() == Shape{3});

  // A detached factor is a constant: L = sum(x * detach(x)) gives dL/dx = x, not 2x.
  Tensor x2 = leaf({1, 2, 3}, {3});
  sum(mul(x2, x2.detach())).backward();
  CHECK(x2.grad().to_vector() == Floats{1, 2, 3});
}

// --- the graph is walked without recursion ---

TEST_CASE("a chain of 100,000 ops backpropagates without recursion", "[ch02][slow]") {
  // y_0 = x, y_k = y_{k-1} + x: y_N = (N + 1) x, so dy_N/dx = N + 1.
  constexpr int kOps = 100000;
  Tensor x = leaf({0.5f}, {});
  Tensor y = x;
  for (int k = 0; k < kOps; ++k) y = add(y, x);
  CHECK(y.item() == 0.5f * (kOps + 1));  // exact: multiples of 0.5 below 2^24
  y.backward();
  CHECK(x.grad().item() == static_cast<float>(kOps + 1));
}

TEST_CASE("destroying an un-backwarded chain of 100,000 ops does not overflow the stack", "[ch02][slow]") {
  Tensor x = leaf({2.0f}, {1});
  {
    // Each mul saves both inputs for its backward, so every node also holds
    // the previous tensor through its saved values, not only through its edges.
    Tensor y = x;
    for (int k = 0; k < 100000; ++k) y = mul(y, 1.0f);
    CHECK(y.item() == 2.0f);
    CHECK(x.impl().use_count() > 1);  // the graph holds x
  }  // y and its whole graph are destroyed here
  CHECK(x.impl().use_count() == 1);  // everything that held x is gone
}

// --- freeing the graph ---

TEST_CASE("backward frees the graph; a second call needs retain_graph", "[ch02]") {
  Tensor x = leaf({1, 2}, {2});
  Tensor loss = sum(mul(x, x));  // dL/dx = 2x = (2, 4)
  loss.backward(Tensor(), /*retain_graph=*/true);
  CHECK(x.grad().to_vector() == Floats{2, 4});
  loss.backward(Tensor(), /*retain_graph=*/true);  // the graph is still there: it accumulates
  CHECK(x.grad().to_vector() == Floats{4, 8});
  loss.backward();  // a third time, now freeing the graph
  CHECK(x.grad().to_vector() == Floats{6, 12});
  REQUIRE(loss.grad_fn() != nullptr);
  CHECK(loss.grad_fn()->released);
  CHECK(loss.grad_fn()->inputs.empty());
  REQUIRE_THROWS_MENTIONING(loss.backward(), "backward", "'sum'", "already freed", "retain_graph");
  CHECK(x.grad().to_vector() == Floats{6, 12});  // the failed call added nothing

  // A new graph built on a freed intermediate result fails when it reaches it.
  Tensor a = leaf({3}, {1});
  Tensor h = mul(a, 2.0f);
  sum(h).backward();
  REQUIRE_THROWS_MENTIONING(sum(mul(h, 5.0f)).backward(), "'mul'", "freed");
}

// --- broadcasting ---

TEST_CASE("gradients of broadcast inputs are summed back to the input's shape", "[ch02][broadcast]") {
  SECTION("(3, 1) + (1, 4)") {
    Tensor a = leaf({1, 2, 3}, {3, 1});
    Tensor b = leaf({10, 20, 30, 40}, {1, 4});
    Tensor y = add(a, b);
    CHECK(y.shape() == Shape{3, 4});
    sum(y).backward();
    // Each a[i] was used in 4 sums, each b[j] in 3.
    CHECK(a.grad().shape() == Shape{3, 1});
    CHECK(a.grad().to_vector() == Floats{4, 4, 4});
    CHECK(b.grad().shape() == Shape{1, 4});
    CHECK(b.grad().to_vector() == Floats{3, 3, 3, 3});
  }
  SECTION("(3, 1) * (1, 4)") {
    Tensor a = leaf({1, 2, 3}, {3, 1});
    Tensor b = leaf({10, 20, 30, 40}, {1, 4});
    sum(mul(a, b)).backward();
    // dL/da_i = sum_j b_j = 100; dL/db_j = sum_i a_i = 6.
    CHECK(a.grad().to_vector() == Floats{100, 100, 100});
    CHECK(b.grad().to_vector() == Floats{6, 6, 6, 6});
  }
  SECTION("a 0-d scalar times a (2, 3) tensor") {
    Tensor s = leaf({2}, {});
    Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
    sum(mul(s, x)).backward();
    // dL/ds = sum(x) = 21, a 0-d gradient; dL/dx = s = 2 everywhere.
    CHECK(s.grad().dim() == 0);
    CHECK(s.grad().item() == 21.0f);
    CHECK(x.grad().to_vector() == Floats(6, 2.0f));
  }
  SECTION("a (3,) row against (2, 3), with an output gradient") {
    Tensor row = leaf({1, 1, 1}, {3});
    Tensor m = from_vector({0, 0, 0, 0, 0, 0}, {2, 3});
    add(m, row).backward(from_vector({1, 2, 3, 10, 20, 30}, {2, 3}));
    CHECK(row.grad().to_vector() == Floats{11, 22, 33});  // column sums
  }
}

TEST_CASE("sum_to_shape sums over the broadcast dims", "[ch02][broadcast]") {
  // g[i, j, k] = 12 i + 4 j + k for a (2, 3, 4) gradient.
  Tensor g = from_vector({0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                          12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23},
                         {2, 3, 4});
  // To (3, 1): sum over i and k: sum_i sum_k (12i + 4j + k) = 48 + 32 j + 12 = 60 + 32 j.
  Tensor to31 = sum_to_shape(g, {3, 1});
  CHECK(to31.shape() == Shape{3, 1});
  CHECK(to31.to_vector() == Floats{60, 92, 124});
  // To (4,): sum over i and j: 3*12 + 2*4*(0+1+2) + 6k = 60 + 6k.
  CHECK(sum_to_shape(g, {4}).to_vector() == Floats{60, 66, 72, 78});
  // To (2, 1, 1): sum over j and k of each block: sum_{j,k}(12i + 4j + k) = 144 i + 48 + 18.
  CHECK(sum_to_shape(g, {2, 1, 1}).to_vector() == Floats{66, 210});
  // To (): everything, 0 + 1 + ... + 23 = 276.
  Tensor all = sum_to_shape(g, {});
  CHECK(all.dim() == 0);
  CHECK(all.item() == 276.0f);
  // The same shape: nothing to do, the very same tensor comes back.
  CHECK(sum_to_shape(g, {2, 3, 4}).impl() == g.impl());
  // A non-contiguous gradient is read in logical order: [[0, 3], [1, 4], [2, 5]] -> column sums.
  Tensor tt = from_vector({0, 1, 2, 3, 4, 5}, {2, 3}).t();
  CHECK(sum_to_shape(tt, {1, 2}).to_vector() == Floats{3, 12});
  REQUIRE_THROWS_MENTIONING(sum_to_shape(g, {5}), "sum_to_shape", "(5,)", "(2, 3, 4)");
}

TEST_CASE("gradients flow through views to the base tensor's positions", "[ch02][views]") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  // L = sum(x^T * w) with w (3, 2): dL/dx = w^T.
  Tensor w = from_vector({1, 2, 3, 4, 5, 6}, {3, 2});
  sum(mul(x.t(), w)).backward();
  CHECK(x.grad().to_vector() == Floats{1, 3, 5, 2, 4, 6});
  x.zero_grad();
  // Only the sliced positions get a gradient: column 1 (shape (2,)) gets 1 each,
  // and x[1, 2] (a (1,) slice broadcast over the 2 elements of the sum) gets 2.
  sum(add(x.select(1, 1), x.slice(0, 1, 2).slice(1, 2, 3).reshape({1}))).backward();
  CHECK(x.grad().to_vector() == Floats{0, 1, 0, 0, 1, 2});
  x.zero_grad();
  // expand's gradient is summed over the stretched dim: each of 4 copies counts.
  sum(x.unsqueeze(0).expand({4, 2, 3})).backward();
  CHECK(x.grad().to_vector() == Floats(6, 4.0f));
}

// --- gradient checking ---

TEST_CASE("gradcheck passes on correct backwards", "[ch02][gradcheck]") {
  // mul with broadcasting: (2, 3) * (3,) -> 6 + 3 = 9 partial derivatives.
  Tensor a = leaf({0.5f, -1.2f, 2.0f, 0.3f, 1.7f, -0.8f}, {2, 3});
  Tensor b = leaf({1.5f, -0.5f, 0.25f}, {3});
  const auto r = gradcheck("mul", [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); },
                           {a, b});
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.checked == 9);
  CHECK(r.worst_error < 2e-3);
  CHECK(r.message == "gradcheck passed for 'mul': 9 partial derivatives");

  // y = x*x + x and the correct custom square.
  Tensor x = leaf({0.7f, -1.3f, 2.1f}, {3});
  const auto r2 = gradcheck("x*x + x", [](const std::vector<Tensor>& in) {
    return add(mul(in[0], in[0]), in[0]);
  }, {x});
  INFO(r2.message);
  CHECK(r2.ok);
  CHECK(r2.checked == 3);
  const auto r3 = gradcheck("good_square", [](const std::vector<Tensor>& in) { return good_square(in[0]); },
                            {x});
  CHECK(r3.ok);

  // Inputs that do not require grad are not checked.
  Tensor constant = from_vector({1, 2, 3}, {3});
  const auto r4 = gradcheck("add", [](const std::vector<Tensor>& in) { return add(in[0], in[1]); },
                            {x, constant});
  CHECK(r4.ok);
  CHECK(r4.checked == 3);
  // Inputs must be leaves (the check nudges their values in place).
  REQUIRE_THROWS_MENTIONING(gradcheck("mul", [](const std::vector<Tensor>& in) { return in[0]; },
                                      {mul(x, 2.0f)}),
                            "gradcheck(mul)", "leaf");
}

TEST_CASE("gradcheck catches a deliberately wrong backward (3x instead of 2x)", "[ch02][gradcheck]") {
  Tensor x = leaf({0.5f, -1.5f, 2.0f, 1.0f}, {2, 2});
  // gradcheck differentiates L = sum(out * w) with w = randn(out.shape) from its seed.
  Generator gen(GradcheckOptions{}.seed);
  const Tensor w = randn({2, 2}, gen);
  const float w0 = w.at({0, 0});
  REQUIRE(std::fabs(w0) > 0.05f);  // big enough that element (0, 0) already fails

  const auto r = gradcheck("bad_square", [](const std::vector<Tensor>& in) { return bad_square(in[0]); },
                           {x});
  INFO(r.message);
  CHECK_FALSE(r.ok);
  CHECK(r.checked == 4);  // every element is still compared
  // The message names the op, the input, the index and both values. At (0, 0):
  // analytical = w0 * x * 3 (the wrong backward), numerical ~= w0 * 2x = w0.
  CHECK(contains(r.message, "gradcheck failed for 'bad_square'"));
  CHECK(contains(r.message, "input 0 of shape (2, 2)"));
  CHECK(contains(r.message, "index (0, 0)"));
  char analytical[64];
  std::snprintf(analytical, sizeof analytical, "analytical %.6g vs", static_cast<double>((w0 * 0.5f) * 3.0f));
  CHECK(contains(r.message, analytical));
  const size_t at = r.message.find("numerical ");
  REQUIRE(at != std::string::npos);
  const double numerical = std::strtod(r.message.c_str() + at + 10, nullptr);
  CHECK(std::fabs(numerical - w0) <= 1e-3 + 1e-2 * std::fabs(w0));
  // The worst |analytical - numerical| is max_i |3 x_i w_i - 2 x_i w_i| = max_i |x_i w_i|.
  const Floats xs = x.to_vector(), ws = w.to_vector();
  double expected_worst = 0.0;
  for (size_t i = 0; i < xs.size(); ++i) expected_worst = std::max(expected_worst, std::fabs(double(xs[i]) * ws[i]));
  CHECK(std::fabs(r.worst_error - expected_worst) <= 1e-3 + 1e-2 * expected_worst);
}

TEST_CASE("gradcheck catches a gradient in the wrong positions and names the input", "[ch02][gradcheck]") {
  SECTION("a transpose whose backward reshapes instead of transposing") {
    Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
    // x[0, 1] lands at out[1, 0] (flat 2) but the wrong backward hands it the
    // weight of out[0, 1] (flat 1), so (0, 0) passes and (0, 1) is the first failure.
    Generator gen(GradcheckOptions{}.seed);
    const Floats ws = randn({3, 2}, gen).to_vector();
    REQUIRE(std::fabs(ws[2] - ws[1]) > 0.05f);
    const auto r = gradcheck("bad_transpose",
                             [](const std::vector<Tensor>& in) { return bad_transpose(in[0]); }, {x});
    INFO(r.message);
    CHECK_FALSE(r.ok);
    CHECK(contains(r.message, "'bad_transpose'"));
    CHECK(contains(r.message, "input 0 of shape (2, 3), index (0, 1)"));
    char values[128];
    std::snprintf(values, sizeof values, "analytical %.6g vs numerical ", static_cast<double>(ws[1]));
    CHECK(contains(r.message, values));
  }
  SECTION("a product whose gradient for the second input has the wrong sign") {
    Tensor a = leaf({1.5f, -2.0f}, {2});
    Tensor b = leaf({0.5f, 3.0f}, {2});
    const auto r = gradcheck("bad_product", [](const std::vector<Tensor>& in) {
      return bad_product(in[0], in[1]);
    }, {a, b});
    INFO(r.message);
    CHECK_FALSE(r.ok);
    // Input 0 is right, so the first failure is in input 1, at its first element.
    CHECK(contains(r.message, "'bad_product': input 1 of shape (2,), index (0,)"));
  }
}

// --- drawing the graph ---

TEST_CASE("to_dot draws ops, shapes and which tensors require grad", "[ch02][dot]") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  x.set_name("x");
  Tensor c = from_vector({1, 2, 3}, {3});  // a constant: no grad
  Tensor loss = sum(mul(x, c));
  const std::string dot = io::to_dot(loss);  // draw before backward(), which frees the graph
  INFO(dot);

  CHECK(dot.rfind("digraph", 0) == 0);  // starts with "digraph"
  CHECK(count_of(dot, "{") == count_of(dot, "}"));
  CHECK(count_of(dot, "{") == 1);
  CHECK(dot.substr(dot.size() - 2) == "}\n");
  // One ellipse per op, one box per tensor.
  CHECK(contains(dot, "[shape=ellipse, label=\"mul\"]"));
  CHECK(contains(dot, "[shape=ellipse, label=\"sum\"]"));
  CHECK(count_of(dot, "shape=ellipse") == 2);
  CHECK(count_of(dot, "shape=box") == 4);  // loss, x*c, x, c
  // The named leaf that requires grad, highlighted; the constant, plain; the
  // loss (0-d) and the intermediate require grad but are not leaves.
  CHECK(contains(dot, "fillcolor=lightblue, label=\"x\\n(2, 3)\\nleaf, requires_grad\""));
  CHECK(contains(dot, "fillcolor=white, label=\"(3,)\"]"));
  CHECK(contains(dot, "label=\"()\\nrequires_grad\""));
  CHECK(contains(dot, "label=\"(2, 3)\\nrequires_grad\""));
  // Arrows follow the data: x and c into mul, mul into its output, that into sum, sum into loss.
  CHECK(count_of(dot, " -> ") == 5);
  CHECK(contains(dot, "op0 -> t0;"));  // sum -> loss (t0 is the root)
  CHECK(contains(dot, "t1 -> op0;"));  // x*c -> sum
  CHECK(contains(dot, "op1 -> t1;"));  // mul -> x*c
  CHECK(contains(dot, "t2 -> op1;"));  // x -> mul
  CHECK(contains(dot, "t3 -> op1;"));  // c -> mul

  // After backward the graph is freed: only the root and its (now input-less) op remain.
  loss.backward();
  const std::string after = io::to_dot(loss);
  CHECK_FALSE(contains(after, "mul"));
  CHECK(count_of(after, "shape=box") == 1);
}

TEST_CASE("to_dot draws a tensor used twice once", "[ch02][dot]") {
  Tensor x = leaf({1, 2}, {2});
  x.set_name("x");
  const std::string dot = io::to_dot(mul(mul(x, 2.0f), x));  // x feeds two ops
  INFO(dot);
  CHECK(count_of(dot, "label=\"x\\n") == 1);   // one box for x ...
  CHECK(count_of(dot, "label=\"mul\"") == 2);  // ... and two mul ops
  CHECK(count_of(dot, "t2 -> op") == 2);       // x (t2) has an arrow into each
  CHECK(count_of(dot, "{") == count_of(dot, "}"));
  // A tensor with no history is one box and no op.
  const std::string single = io::to_dot(from_vector({1}, {1}));
  CHECK(count_of(single, "shape=box") == 1);
  CHECK(count_of(single, "->") == 0);
}
