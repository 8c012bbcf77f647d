// The row softmax on the CPU: the plain reference that chapter 11's CUDA
// kernel (src/kernels/softmax.cu) is tested against. docs/11-cuda.md.
#include <cmath>

#include "attend/kernels.hpp"

namespace attend::kernels {

void softmax_rows_reference(const float* x, float* y, int64_t rows, int64_t cols) {
  // x, y: (rows, cols). Subtracting the row's maximum keeps exp from
  // overflowing and does not change the result: exp(x - m) / sum exp(x - m).
  for (int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * cols;
    float* y_row = y + r * cols;
    float row_max = -INFINITY;
    for (int64_t j = 0; j < cols; ++j) row_max = std::fmax(row_max, x_row[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      y_row[j] = std::exp(x_row[j] - row_max);
      sum += y_row[j];
    }
    for (int64_t j = 0; j < cols; ++j) y_row[j] /= sum;
  }
}

}  // namespace attend::kernels
