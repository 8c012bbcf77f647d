// Tutorial 02: reverse-mode automatic differentiation. Ops record a graph as
// they run; backward() walks it from the loss to the leaves by the chain rule.
// Chapter 2 (docs/02-autograd.md). Build and run:
//   make tutorials && build/tutorials/02-autograd
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "attend/attend.hpp"

using attend::Tensor;

static const char* yes_no(bool b) { return b ? "yes" : "no"; }

// y = x^3, written as a custom op: forward and backward by hand, joined by
// record_op. The true derivative is 3 x^2; `factor` lets us claim a wrong
// one (2 x^2) to see that gradcheck catches it.
static Tensor cube(const Tensor& x, float factor) {
  const Tensor x_value = x.detach();         // the numbers, without history
  Tensor out = x_value * x_value * x_value;  // no input requires grad: nothing recorded
  attend::record_op("cube", out, {x}, [x_value, factor](const Tensor& grad_out) {
    return std::vector<Tensor>{grad_out * factor * x_value * x_value};  // g * factor * x^2
  });
  return out;
}

int main() {
  std::cout << "== 1. One neuron: o = tanh(w*x + b)\n\n";
  // w and b are the parameters we want gradients for; x is data.
  Tensor x = attend::scalar_tensor(0.5f).set_name("x");
  Tensor w = attend::scalar_tensor(-1.5f).set_name("w").set_requires_grad();
  Tensor b = attend::scalar_tensor(1.0f).set_name("b").set_requires_grad();
  Tensor wx = w * x;  // each op records a Node: its name, inputs and backward
  wx.set_name("w*x");
  Tensor n = wx + b;
  n.set_name("n");
  n.retain_grad();  // keep dLoss/dn too (only leaves keep .grad by default)
  Tensor o = attend::tanh(n);
  o.set_name("o");
  std::cout << "o = " << o << "\n";
  std::printf("w*x = %.6f, n = %.6f, o = tanh(n) = %.6f\n", wx.item(), n.item(), o.item());
  std::printf("o was made by '%s', n by '%s', w*x by '%s'; b is a leaf (made by no op): %s\n\n",
              o.grad_fn()->op.c_str(), n.grad_fn()->op.c_str(), wx.grad_fn()->op.c_str(),
              yes_no(b.is_leaf()));

  std::cout << "== 2. The graph, drawn before backward() frees it\n\n";
  const std::string dot = attend::io::to_dot(o);
  std::cout << dot;
  const std::filesystem::path dot_path =
      std::filesystem::temp_directory_path() / "attend-neuron.dot";
  std::ofstream(dot_path) << dot;
  std::printf("written to %s; render it with\n  dot -Tsvg %s > neuron.svg\n\n",
              dot_path.string().c_str(), dot_path.string().c_str());

  std::cout << "== 3. backward() and the chain rule, checked by hand\n\n";
  o.backward();  // seeds dL/do = 1 and walks o -> n -> (w*x, b) -> (w, x)
  const float x_ = x.item(), o_ = o.item();
  const float do_dn = 1.0f - o_ * o_;  // d tanh(n)/dn = 1 - tanh(n)^2
  std::printf("do/dn = 1 - o^2       = %.6f   autograd: %.6f\n", do_dn, n.grad().item());
  std::printf("do/dw = (1 - o^2) * x = %.6f   autograd: %.6f\n", do_dn * x_, w.grad().item());
  std::printf("do/db = (1 - o^2) * 1 = %.6f   autograd: %.6f\n", do_dn, b.grad().item());
  std::printf("x does not require grad, so it has no gradient: %s\n",
              yes_no(!x.grad().defined()));
  std::printf("after backward the graph is freed; drawing o now shows only o and its op:\n%s\n",
              attend::io::to_dot(o).c_str());

  std::cout << "== 4. Gradients add up\n\n";
  Tensor a = attend::scalar_tensor(3.0f).set_name("a").set_requires_grad();
  Tensor y = a * a + a;  // a is used three times: dy/da = 2a + 1
  y.backward();
  std::printf("y = a*a + a at a = 3: dy/da = 2a + 1 = 7, autograd: %.1f\n", a.grad().item());
  // A second backward adds to .grad instead of replacing it (so that a
  // batch can be split into pieces); zero_grad() starts over.
  (a * a + a).backward();
  std::printf("a second backward without zero_grad: a.grad = %.1f\n", a.grad().item());
  a.zero_grad();
  std::printf("after zero_grad: a.grad is defined: %s\n", yes_no(a.grad().defined()));
  (a * a + a).backward();
  std::printf("backward again: a.grad = %.1f\n", a.grad().item());
  try {
    y.backward();  // y's graph was freed by its first backward
  } catch (const attend::Error& e) {
    std::cout << "y.backward() a second time throws: " << e.what() << "\n";
  }
  std::cout << "\n";

  std::cout << "== 5. A chain of 100,000 ops: the backward walk uses no recursion\n\n";
  Tensor start = attend::scalar_tensor(1.0f).set_requires_grad();
  Tensor chain = start;
  for (int i = 0; i < 100000; ++i) chain = chain * 1.00001f;
  chain.backward();
  // chain = start * c with c = 1.00001^100000 (about e), so d chain/d start = c,
  // which is also chain's value, since start = 1.
  std::printf("d chain/d start = %.6f, chain = %.6f (1.00001^100000 is about e = 2.718282)\n\n",
              start.grad().item(), chain.item());

  std::cout << "== 6. NoGradGuard and detach(): values without history\n\n";
  {
    attend::NoGradGuard no_grad;  // e.g. for evaluation or an optimizer step
    Tensor z = w * x;
    std::printf("inside NoGradGuard: w*x requires grad: %s, has a grad_fn: %s\n",
                yes_no(z.requires_grad()), yes_no(z.grad_fn() != nullptr));
  }
  Tensor z = w * x;
  std::printf("outside again:      w*x requires grad: %s, has a grad_fn: %s\n",
              yes_no(z.requires_grad()), yes_no(z.grad_fn() != nullptr));
  Tensor z_value = z.detach();
  std::printf("z.detach(): requires grad: %s, shares z's storage: %s\n\n",
              yes_no(z_value.requires_grad()), yes_no(z_value.shares_storage_with(z)));

  std::cout << "== 7. Gradient checking: compare backward() with central differences\n\n";
  attend::Generator gen(7);
  Tensor p = attend::randn({2, 3}, gen).set_requires_grad();
  Tensor q = attend::randn({3}, gen).set_requires_grad();  // broadcasts over p's rows
  const auto expression = [](const std::vector<Tensor>& in) {
    return attend::tanh(in[0] * in[1] + in[0]);
  };
  attend::GradcheckResult passed = attend::gradcheck("tanh(p*q + p)", expression, {p, q});
  std::printf("%s (ok=%s, worst |analytical - numerical| = %.2e)\n", passed.message.c_str(),
              yes_no(passed.ok), passed.worst_error);

  Tensor u = attend::randn({4}, gen).set_requires_grad();
  const auto right = attend::gradcheck(
      "cube, backward 3x^2", [](const std::vector<Tensor>& in) { return cube(in[0], 3.0f); }, {u});
  std::printf("%s (ok=%s)\n", right.message.c_str(), yes_no(right.ok));
  const auto wrong = attend::gradcheck(
      "cube, backward 2x^2", [](const std::vector<Tensor>& in) { return cube(in[0], 2.0f); }, {u});
  std::printf("%s (ok=%s)\n", wrong.message.c_str(), yes_no(wrong.ok));

  // The tutorial checks its own claims: a non-zero exit status means one failed.
  const bool as_expected = passed.ok && right.ok && !wrong.ok &&
                           std::fabs(w.grad().item() - do_dn * x_) < 1e-6f;
  return as_expected ? 0 : 1;
}
