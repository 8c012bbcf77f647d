// Helpers shared by the device tests of chapter 11 (tests/ch11_device.cpp,
// tests/ch11_device_ops.cpp): run a function on CPU leaves and on their
// copies on the device, and compare the outputs and every gradient, bit for
// bit or within a stated tolerance.
#pragma once

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "catch_compat.hpp"

namespace attend_test {

// The same bits, NaN included (== would call two NaNs different).
inline bool same_bits(const attend::Tensor& a, const attend::Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> va = a.cpu().to_vector(), vb = b.cpu().to_vector();
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

// How a device result must match the CPU's:
//  - bit_exact: the same bits everywhere (copies, gathers, sums of additions
//    in the CPU's order, IEEE-exact +, -, *, /);
//  - same_bits_on_emulator: the same bits on the emulator, where the kernel
//    runs the CPU's very function on the host; within 1e-4 on a GPU, whose
//    expf and fused multiply-adds round differently;
//  - close: within 1e-5 (unary math functions); close_as_a_sum: within 1e-4
//    (a matmul sums in another order).
// "Within t" is |device - cpu| <= t (1 + |cpu|) everywhere.
enum class Match { bit_exact, same_bits_on_emulator, close, close_as_a_sum };

inline bool matches(const attend::Tensor& on_device, const attend::Tensor& on_cpu, Match match) {
  const bool exact = match == Match::bit_exact ||
                     (match == Match::same_bits_on_emulator && !attend::kernels::running_on_gpu());
  if (exact) return same_bits(on_device, on_cpu);
  const float tolerance = match == Match::close ? 1e-5f : 1e-4f;
  return on_device.shape() == on_cpu.shape() &&
         attend::allclose(on_device.cpu(), on_cpu.cpu(), tolerance, tolerance);
}

inline attend::Generator& device_test_generator() {
  static attend::Generator gen(11);
  return gen;
}

// A CPU leaf of N(0, 1) values, requiring grad.
inline attend::Tensor cpu_leaf(const attend::Shape& shape) {
  return attend::randn(shape, device_test_generator()).set_requires_grad();
}

// Runs f on the CPU leaves and on their copies on the device (through to(),
// so the gradients flow back to the CPU leaves), with the loss
// sum(f(inputs) * w); checks the outputs and every input's gradient.
inline void compare_with_cpu(const std::string& what, const std::vector<attend::Tensor>& leaves,
                             const std::function<attend::Tensor(const std::vector<attend::Tensor>&)>& f,
                             Match match = Match::close) {
  using attend::Tensor;
  INFO(what);
  const Tensor y_cpu = f(leaves);
  const Tensor w = attend::randn(y_cpu.shape(), device_test_generator());
  attend::sum(y_cpu * w).backward();
  std::vector<Tensor> cpu_grads;
  for (Tensor leaf : leaves) {
    cpu_grads.push_back(leaf.grad());
    leaf.zero_grad();
  }
  std::vector<Tensor> on_device;
  for (const Tensor& leaf : leaves) on_device.push_back(leaf.to(attend::Device::cuda));
  const Tensor y_device = f(on_device);
  REQUIRE(y_device.device() == attend::Device::cuda);
  attend::sum(y_device * w.to(attend::Device::cuda)).backward();
  CHECK(matches(y_device, y_cpu, match));
  for (size_t i = 0; i < leaves.size(); ++i) {
    INFO(what << ": gradient of input " << i);
    REQUIRE(leaves[i].grad().defined());
    REQUIRE(leaves[i].grad().device() == attend::Device::cpu);  // to()'s backward brought it back
    CHECK(matches(leaves[i].grad(), cpu_grads[i], match));
    Tensor(leaves[i]).zero_grad();
  }
}

}  // namespace attend_test
