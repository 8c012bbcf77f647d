// Attention weights (or any matrix of values in [0, 1]) drawn as text in a
// terminal. Chapter 5 (docs/05-attention.md) uses it to look at attention;
// chapter 9 at cross-attention.
#pragma once

#include <string>
#include <vector>

#include "attend/tensor.hpp"

namespace attend::io {

// A (rows, cols) weight matrix drawn in the terminal, one shaded cell per
// weight (" .:-=+*#%@" from 0 to the largest weight), rows labelled on the
// left and columns labelled vertically on top.
std::string ascii_heatmap(const Tensor& weights, const std::vector<std::string>& row_labels,
                          const std::vector<std::string>& col_labels);

}  // namespace attend::io
