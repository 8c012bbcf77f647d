// Tutorial 03: the differentiable operations a Transformer is built from --
// stable softmax, reductions, matmul, layer norm, cross-entropy, gathering --
// and a gradient check of each backward. Chapter 3 (docs/03-operations.md).
// Build and run:  make tutorials && build/tutorials/03-operations
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "attend/attend.hpp"

using attend::Tensor;

int main() {
  std::cout << "== 1. Softmax without overflow\n\n";
  Tensor logits = attend::from_vector({1000, 1001, 1002}, {3});
  std::cout << "x               = " << logits << "\n";
  // exp(1000) is far above the largest float (about 3.4e38).
  Tensor naive_exp = attend::exp(logits);
  std::cout << "exp(x)          = " << naive_exp << "\n";
  std::cout << "exp(x)/sum(...) = " << naive_exp / attend::sum(naive_exp)
            << "   (inf / inf is NaN)\n";
  // softmax subtracts the row's maximum first: exp(x - 1002) = e^-2, e^-1, e^0.
  std::cout << "softmax(x)      = " << attend::softmax(logits, -1) << "\n";
  std::cout << "softmax(x-1000) = " << attend::softmax(logits - 1000.0f, -1)
            << "   (the same: softmax ignores a shift)\n";
  std::cout << "log_softmax(x)  = " << attend::log_softmax(logits, -1) << "\n";
  const double by_hand = std::exp(-2.0) / (std::exp(-2.0) + std::exp(-1.0) + 1.0);
  std::printf("by hand: e^-2 / (e^-2 + e^-1 + e^0) = %.4f\n\n", by_hand);

  std::cout << "== 2. Masked fill: -inf scores get probability 0\n\n";
  // Entry (i, j) with j > i is masked (a "causal" mask, as in chapter 5).
  Tensor scores = attend::zeros({3, 3});
  Tensor future = attend::from_vector({0, 1, 1, 0, 0, 1, 0, 0, 0}, {3, 3});
  Tensor masked = attend::masked_fill(scores, future, -std::numeric_limits<float>::infinity());
  std::cout << "masked_fill(zeros, mask, -inf) =\n" << masked << "\n";
  std::cout << "softmax(..., -1) =\n" << attend::softmax(masked, -1) << "\n\n";

  std::cout << "== 3. Reductions, with and without keepdim\n\n";
  Tensor m = attend::from_vector({1, 2, 3, 4, 5, 9}, {2, 3});
  std::cout << "m =\n" << m << "\n";
  std::cout << "sum(m, {-1})       = " << attend::sum(m, {-1}) << "\n";
  std::cout << "sum(m, {-1}, true) =\n" << attend::sum(m, {-1}, true) << "\n";
  std::cout << "max(m, {0})        = " << attend::max(m, {0}) << "\n";
  // keepdim leaves a size-1 dim behind, so the result broadcasts back against m.
  std::cout << "m - mean(m, {-1}, true) =\n" << m - attend::mean(m, {-1}, true) << "\n\n";

  std::cout << "== 4. matmul against the reference triple loop\n\n";
  attend::Generator gen(3);
  Tensor a = attend::randn({5, 7}, gen);
  Tensor b = attend::randn({7, 3}, gen);
  Tensor c = attend::matmul(a, b);  // chapter 10's packed kernel (src/kernels/matmul.cpp)
  Tensor c_reference = attend::zeros({5, 3});
  attend::kernels::matmul_reference(a.data(), b.data(), c_reference.data(), 5, 7, 3);
  std::printf("(5, 7) @ (7, 3) -> %s, max |matmul - reference| = %g\n",
              attend::to_string(c.shape()).c_str(), attend::max_abs_diff(c, c_reference));
  // Batch dims broadcast: (2, 5, 7) @ (7, 3) multiplies both matrices by b.
  Tensor batch = attend::randn({2, 5, 7}, gen);
  Tensor batched = attend::matmul(batch, b);
  std::printf("(2, 5, 7) @ (7, 3) -> %s, matrix 1 equals matmul(batch[1], b): %s\n\n",
              attend::to_string(batched.shape()).c_str(),
              attend::allclose(batched.select(0, 1), attend::matmul(batch.select(0, 1), b))
                  ? "yes"
                  : "no");

  std::cout << "== 5. Layer norm of one row\n\n";
  Tensor row = attend::from_vector({1, 2, 3, 4}, {1, 4});
  Tensor normalized = attend::layer_norm(row, Tensor(), Tensor());  // no weight, no bias
  std::cout << "layer_norm([1, 2, 3, 4]) = " << normalized << "\n";
  std::printf("by hand: mean 2.5, variance 1.25, (1 - 2.5) / sqrt(1.25 + 1e-5) = %.4f\n",
              -1.5 / std::sqrt(1.25 + 1e-5));
  std::printf("the result has mean %.4f and variance %.4f\n",
              attend::mean(normalized).item(),
              attend::mean(normalized * normalized).item());
  Tensor gain = attend::from_vector({1, 1, 2, 2}, {4});
  Tensor shift = attend::from_vector({0, 0, 0, 10}, {4});
  std::cout << "with weight [1, 1, 2, 2] and bias [0, 0, 0, 10]: "
            << attend::layer_norm(row, gain, shift) << "\n\n";

  std::cout << "== 6. Cross-entropy with ignore_index and label smoothing\n\n";
  Tensor scores_ce = attend::from_vector({2.0f, 0.5f, -1.0f, 0.0f,   // row 0: target 0
                                          0.1f, 0.2f, 3.0f, -0.5f,   // row 1: target 2
                                          1.0f, 1.0f, 1.0f, 1.0f},   // row 2: padding
                                         {3, 4})
                         .set_requires_grad();
  Tensor targets = attend::from_indices({0, 2, -100}, {3});
  Tensor plain = attend::cross_entropy(scores_ce, targets);  // ignore_index = -100
  Tensor log_probs = attend::log_softmax(scores_ce.detach(), -1);
  std::printf("loss = %.4f; by hand, -(log p[0][0] + log p[1][2]) / 2 = %.4f (row 2 is ignored)\n",
              plain.item(), -(log_probs.at({0, 0}) + log_probs.at({1, 2})) / 2.0f);
  const float smoothing = 0.1f;
  Tensor smooth = attend::cross_entropy(scores_ce, targets, -100, smoothing);
  // With smoothing e the target is q = (1-e) one-hot + e/C, and the loss is -sum_c q_c log p_c.
  const float row0 = -(1 - smoothing) * log_probs.at({0, 0}) -
                     smoothing * attend::mean(log_probs.select(0, 0)).item();
  const float row1 = -(1 - smoothing) * log_probs.at({1, 2}) -
                     smoothing * attend::mean(log_probs.select(0, 1)).item();
  std::printf("with label_smoothing 0.1: loss = %.4f; by hand %.4f\n", smooth.item(),
              (row0 + row1) / 2.0f);
  smooth.backward();
  // dloss/dlogits = (softmax - q) / N, N = 2 counted rows; the ignored row gets 0.
  std::cout << "its gradient (p - q) / 2 =\n" << scores_ce.grad() << "\n";
  std::printf("row 0 of it sums to %.4f (p and q are both distributions)\n\n",
              attend::sum(scores_ce.grad().select(0, 0)).item());

  std::cout << "== 7. Gathering rows: the backward scatter-adds\n\n";
  Tensor table = attend::arange(8).reshape({4, 2}).set_requires_grad();
  Tensor ids = attend::from_indices({1, 3, 1}, {3});
  Tensor picked = attend::embedding(table, ids);  // rows 1, 3, 1 of the table
  std::cout << "embedding(table, [1, 3, 1]) =\n" << picked << "\n";
  attend::sum(picked).backward();
  std::cout << "table.grad (row 1 was picked twice, so it gets 2) =\n" << table.grad() << "\n";
  Tensor joined = attend::cat({table.detach(), picked.detach()}, 0);
  std::vector<Tensor> parts = attend::split(joined, {4, 3}, 0);
  std::printf("cat((4, 2), (3, 2)) -> %s; split back into %s and %s\n\n",
              attend::to_string(joined.shape()).c_str(),
              attend::to_string(parts[0].shape()).c_str(),
              attend::to_string(parts[1].shape()).c_str());

  std::cout << "== 8. The backward passes, checked against central differences\n\n";
  using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
  struct Check {
    std::string name;
    Fn f;
    std::vector<Tensor> inputs;
  };
  attend::Generator check_gen(11);
  auto input = [&check_gen](const attend::Shape& shape) {
    return attend::randn(shape, check_gen).set_requires_grad();
  };
  const Tensor check_targets = attend::from_indices({1, -100, 4}, {3});
  const Tensor check_ids = attend::from_indices({2, 0, 2}, {3});
  const std::vector<Check> checks = {
      {"mul, (2,3) * (3,) broadcast", [](const auto& in) { return in[0] * in[1]; },
       {input({2, 3}), input({3})}},
      {"sum over dim 0, keepdim", [](const auto& in) { return attend::sum(in[0], {0}, true); },
       {input({3, 4})}},
      {"max over dim -1", [](const auto& in) { return attend::max(in[0], {-1}); },
       {input({3, 4})}},
      {"matmul, (2,3,4) @ (4,5)", [](const auto& in) { return attend::matmul(in[0], in[1]); },
       {input({2, 3, 4}), input({4, 5})}},
      {"softmax", [](const auto& in) { return attend::softmax(in[0], -1); }, {input({2, 5})}},
      {"log_softmax", [](const auto& in) { return attend::log_softmax(in[0], 0); },
       {input({4, 3})}},
      {"layer_norm", [](const auto& in) { return attend::layer_norm(in[0], in[1], in[2]); },
       {input({3, 5}), input({5}), input({5})}},
      {"cross_entropy, smoothing 0.1",
       [&check_targets](const auto& in) {
         return attend::cross_entropy(in[0], check_targets, -100, 0.1f);
       },
       {input({3, 6})}},
      {"index_select, an index twice",
       [&check_ids](const auto& in) { return attend::index_select(in[0], 0, check_ids); },
       {input({3, 4})}},
  };
  bool all_passed = true;
  for (const Check& check : checks) {
    const attend::GradcheckResult result = attend::gradcheck(check.name, check.f, check.inputs);
    std::printf("%-30s %-6s %3lld partial derivatives, worst error %.1e\n", check.name.c_str(),
                result.ok ? "ok" : "FAILED", static_cast<long long>(result.checked),
                result.worst_error);
    if (!result.ok) std::printf("  %s\n", result.message.c_str());
    all_passed = all_passed && result.ok;
  }
  return all_passed ? 0 : 1;
}
