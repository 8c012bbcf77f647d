// Helpers for the matmul kernel tests of chapters 10 and 11: random matrices
// and a check against kernels::matmul_reference whose tolerance is float
// rounding, scaled by K and by the magnitudes actually summed.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "attend/kernels.hpp"
#include "catch_compat.hpp"

namespace attend_test {

using Floats = std::vector<float>;

inline Floats random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Floats v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A row-major (rows, cols) matrix.
struct Dense {
  int64_t rows, cols;
  Floats v;
  float at(int64_t r, int64_t c) const { return v[static_cast<size_t>(r * cols + c)]; }
};

inline Dense random_dense(int64_t rows, int64_t cols, uint32_t seed) {
  return {rows, cols, random_floats(rows * cols, seed)};
}

// The largest |got - reference| / allowed over the elements of a @ b: a sum
// of K products has an error of at most about K * eps * sum_k |a_ik b_kj|
// (for the reference and the kernel under test alike). Below 1 is a pass.
inline double worst_error_ratio(const Floats& got, const Dense& a, const Dense& b) {
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  Floats reference(static_cast<size_t>(M * N));
  attend::kernels::matmul_reference(a.v.data(), b.v.data(), reference.data(), M, K, N);
  Floats abs_a(a.v.size()), abs_b(b.v.size()), magnitude(static_cast<size_t>(M * N));
  for (size_t i = 0; i < a.v.size(); ++i) abs_a[i] = std::fabs(a.v[i]);
  for (size_t i = 0; i < b.v.size(); ++i) abs_b[i] = std::fabs(b.v[i]);
  attend::kernels::matmul_reference(abs_a.data(), abs_b.data(), magnitude.data(), M, K, N);
  double worst = 0.0;
  for (size_t i = 0; i < got.size() && i < reference.size(); ++i) {
    const double allowed = 2.0 * static_cast<double>(K + 2) * FLT_EPSILON * magnitude[i] + 1e-30;
    const double error = std::fabs(static_cast<double>(got[i]) - reference[i]) / allowed;
    worst = std::isnan(error) ? INFINITY : std::max(worst, error);
  }
  return worst;
}

// Every element of `got` within float rounding of matmul_reference(a, b).
inline void check_close(const Floats& got, const Dense& a, const Dense& b, const std::string& what) {
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  REQUIRE(static_cast<int64_t>(got.size()) == M * N);
  const double worst = worst_error_ratio(got, a, b);
  INFO(what << ": (" << M << ", " << K << ") @ (" << K << ", " << N
            << "), worst error / allowed = " << worst);
  CHECK(worst <= 1.0);
}

}  // namespace attend_test
