// Numerical gradient checking by central differences (chapter 2, docs/02-autograd.md).
// Inputs and outputs on the device are read and nudged through copies on
// the host (chapter 11).
#include "attend/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "attend/autograd.hpp"

namespace attend {

namespace {

// sum(out * w) in double: the scalar whose gradient we check.
double weighted_sum(const Tensor& out, const std::vector<float>& w) {
  const std::vector<float> v = to_device(out, Device::cpu).to_vector();
  double s = 0.0;
  for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(v[i]) * w[i];
  return s;
}

// All indices of `shape` in row-major order: (0,0), (0,1), ...
std::vector<std::vector<int64_t>> all_indices(const Shape& shape) {
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> index(shape.size(), 0);
  for (int64_t n = 0; n < numel(shape); ++n) {
    out.push_back(index);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

}  // namespace

GradcheckResult gradcheck(const std::string& op,
                          const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  GradcheckResult result;

  // Analytical: one backward pass with output gradient w gives d(sum(out*w))/d(input).
  for (const Tensor& in : inputs) {
    if (in.defined() && in.requires_grad() && !in.is_leaf()) {
      throw Error("gradcheck(" + op + "): inputs must be leaf tensors");
    }
  }
  for (Tensor in : inputs) {
    if (in.defined()) in.zero_grad();
  }
  Tensor out = f(inputs);
  Generator gen(options.seed);
  const Tensor w = randn(out.shape(), gen);
  const std::vector<float> weights = w.to_vector();
  out.backward(to_device(w, out.device()));

  // Numerical: nudge one element at a time, evaluate without recording a graph.
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor in = inputs[k];
    if (!in.defined() || !in.requires_grad()) continue;
    const Tensor grad = in.grad().defined() ? to_device(in.grad(), Device::cpu) : Tensor();
    // An input on the device is nudged in a copy on the host, written back whole.
    Tensor host = in.device() == Device::cpu ? in : to_device(in, Device::cpu);
    const auto set = [&](const std::vector<int64_t>& index, float value) {
      host.set(index, value);
      if (host.impl() != in.impl()) copy_into(in, host);
    };
    for (const std::vector<int64_t>& index : all_indices(in.shape())) {
      const float original = host.at(index);
      set(index, static_cast<float>(original + options.eps));
      const double plus = weighted_sum(f(inputs), weights);
      set(index, static_cast<float>(original - options.eps));
      const double minus = weighted_sum(f(inputs), weights);
      set(index, original);
      // The step actually taken in float32 may differ slightly from 2*eps.
      const double step = static_cast<double>(static_cast<float>(original + options.eps)) -
                          static_cast<double>(static_cast<float>(original - options.eps));
      const double numerical = (plus - minus) / step;
      const double analytical = grad.defined() ? grad.at(index) : 0.0;
      const double error = std::fabs(analytical - numerical);
      const double tolerance = options.atol + options.rtol * std::fabs(numerical);
      ++result.checked;
      result.worst_error = std::max(result.worst_error, error);
      if (!(error <= tolerance) && result.ok) {
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      ": analytical %.6g vs numerical %.6g (|difference| %.3g > tolerance %.3g)",
                      analytical, numerical, error, tolerance);
        result.ok = false;
        result.message = "gradcheck failed for '" + op + "': input " + std::to_string(k) +
                         " of shape " + to_string(in.shape()) + ", index " + to_string(index) +
                         buf;
      }
    }
  }
  if (result.ok) {
    result.message = "gradcheck passed for '" + op + "': " + std::to_string(result.checked) +
                     " partial derivatives";
  }
  return result;
}

}  // namespace attend
