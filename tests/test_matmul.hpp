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
  // The same matrix stored column-major (element (r, c) at c * rows + r),
  // as a transposed view reads it: row stride 1, column stride rows.
  Floats column_major() const {
    Floats t(v.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = at(r, c);
    }
    return t;
  }
};

inline Dense random_dense(int64_t rows, int64_t cols, uint32_t seed) {
  return {rows, cols, random_floats(rows * cols, seed)};
}

// The reference product and, per element, the sum of the magnitudes it
// added up (sum_k |a_ik b_kj|), for the tolerance below. Computed once when
// several kernels are checked against the same product.
struct Reference {
  Floats value, magnitude;
};

inline Reference reference_of(const Dense& a, const Dense& b) {
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  Reference r{Floats(static_cast<size_t>(M * N)), Floats(static_cast<size_t>(M * N))};
  attend::kernels::matmul_reference(a.v.data(), b.v.data(), r.value.data(), M, K, N);
  Floats abs_a(a.v.size()), abs_b(b.v.size());
  for (size_t i = 0; i < a.v.size(); ++i) abs_a[i] = std::fabs(a.v[i]);
  for (size_t i = 0; i < b.v.size(); ++i) abs_b[i] = std::fabs(b.v[i]);
  attend::kernels::matmul_reference(abs_a.data(), abs_b.data(), r.magnitude.data(), M, K, N);
  return r;
}

// The largest |got - reference| / allowed over the elements of a product
// with inner size K: a sum of K products has an error of at most about
// K * eps * sum_k |a_ik b_kj| (for the reference and the kernel under test
// alike). Below 1 is a pass.
inline double worst_error_ratio(const Floats& got, const Reference& reference, int64_t K) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size() && i < reference.value.size(); ++i) {
    const double allowed =
        2.0 * static_cast<double>(K + 2) * FLT_EPSILON * reference.magnitude[i] + 1e-30;
    const double error = std::fabs(static_cast<double>(got[i]) - reference.value[i]) / allowed;
    worst = std::isnan(error) ? INFINITY : std::max(worst, error);
  }
  return worst;
}

inline double worst_error_ratio(const Floats& got, const Dense& a, const Dense& b) {
  return worst_error_ratio(got, reference_of(a, b), a.cols);
}

// Every element of `got` within float rounding of the reference product of a and b.
inline void check_close(const Floats& got, const Reference& reference, const Dense& a,
                        const Dense& b, const std::string& what) {
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  REQUIRE(static_cast<int64_t>(got.size()) == M * N);
  const double worst = worst_error_ratio(got, reference, K);
  INFO(what << " (" << attend::kernels::matmul_kernel_name() << "): (" << M << ", " << K << ") @ ("
            << K << ", " << N << "), worst error / allowed = " << worst);
  CHECK(worst <= 1.0);
}

inline void check_close(const Floats& got, const Dense& a, const Dense& b, const std::string& what) {
  check_close(got, reference_of(a, b), a, b, what);
}

}  // namespace attend_test
