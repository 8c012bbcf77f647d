// Small tensor helpers shared by several chapters' tests: leaf tensors that
// require grad (inputs for backward and gradcheck) and the names in a list of
// named tensors. Uses attend/tensor.hpp only.
#pragma once

#include <string>
#include <vector>

#include "attend/tensor.hpp"

namespace attend_test {

// `values` laid out in `shape`, as a leaf that requires grad.
inline attend::Tensor leaf(const std::vector<float>& values, const attend::Shape& shape) {
  attend::Tensor t = attend::from_vector(values, shape);
  t.set_requires_grad(true);
  return t;
}

// N(0, 1) values drawn from `gen`, as a leaf that requires grad.
inline attend::Tensor leaf(const attend::Shape& shape, attend::Generator& gen) {
  attend::Tensor t = attend::randn(shape, gen);
  t.set_requires_grad(true);
  return t;
}

// The names of `named`, in order.
inline std::vector<std::string> names_of(const attend::NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& [name, t] : named) out.push_back(name);
  return out;
}

}  // namespace attend_test
