// Choosing the matmul micro-kernel in tests: each kernel this CPU can run
// (kernels::matmul_runnable_kernels) is forced in turn and compared with the
// reference loop; the default comes back when the test ends, however it ends.
#pragma once

#include <string>

#include "attend/kernels.hpp"

namespace attend_test {

// Makes matmul_strided use the named micro-kernel while alive.
class UseKernel {
 public:
  explicit UseKernel(const std::string& name) : ok_(attend::kernels::matmul_use_kernel(name)) {}
  ~UseKernel() { attend::kernels::matmul_use_kernel(""); }
  UseKernel(const UseKernel&) = delete;
  UseKernel& operator=(const UseKernel&) = delete;
  bool ok() const { return ok_; }  // false: the CPU cannot run it (nothing changed)

 private:
  bool ok_;
};

}  // namespace attend_test
