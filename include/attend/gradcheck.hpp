// Numerical gradient checking: compare the gradients backward() computes
// with central differences (f(x + eps) - f(x - eps)) / (2 eps).
// Chapter 2 (docs/02-autograd.md); every op of chapter 3 is checked with it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "attend/tensor.hpp"

namespace attend {

struct GradcheckOptions {
  // float32 arithmetic: eps = 1e-3 keeps the rounding error of the difference
  // (about 1e-7 / eps = 1e-4 relative) and the truncation error (eps^2 times the
  // third derivative) both near 1e-4, well inside these tolerances, while a wrong
  // backward (a missing factor, a sign, a transposition) is off by far more.
  double eps = 1e-3;
  double atol = 2e-3;
  double rtol = 2e-2;
  uint64_t seed = 1234;  // for the random weights that turn the output into a scalar
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: op, input, index, both values
  int64_t checked = 0;  // how many partial derivatives were compared
  double worst_error = 0.0;  // largest |analytical - numerical|
};

// Checks d/d(inputs) of loss = sum(f(inputs) * w) for fixed random weights w
// (random weights make every element of the output gradient different, so a
// backward that mixes up positions is caught). Every input that requires
// grad is checked element by element: |a - n| <= atol + rtol * |n|.
GradcheckResult gradcheck(const std::string& op,
                          const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace attend
