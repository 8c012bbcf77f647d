// Attention weights drawn as text: one shaded cell per weight.
// Chapter 5 (docs/05-attention.md); chapter 9 uses it for cross-attention.
#include <algorithm>

#include "attend/heatmap.hpp"

namespace attend::io {

namespace {
// From "nothing" to "all of it": darker characters for larger weights.
const std::string kShades = " .:-=+*#%@";
constexpr int kCellWidth = 3;  // characters per column

// A label's characters: UTF-8 sequences kept whole ("è" is two bytes, one
// character), so accented labels line up (chapter 9 prints toy-French).
std::vector<std::string> characters(const std::string& label) {
  std::vector<std::string> out;
  for (unsigned char c : label) {
    if ((c & 0xC0) == 0x80 && !out.empty()) {
      out.back() += static_cast<char>(c);  // a continuation byte: part of the previous character
    } else {
      out.emplace_back(1, static_cast<char>(c));
    }
  }
  return out;
}
}  // namespace

std::string ascii_heatmap(const Tensor& weights, const std::vector<std::string>& row_labels,
                          const std::vector<std::string>& col_labels) {
  if (!weights.defined() || weights.dim() != 2 || weights.dtype() != DType::Float32) {
    throw Error("ascii_heatmap: expects a 2-D float32 tensor (rows, cols)");
  }
  const int64_t rows = weights.size(0), cols = weights.size(1);
  if (static_cast<int64_t>(row_labels.size()) != rows || static_cast<int64_t>(col_labels.size()) != cols) {
    throw Error("ascii_heatmap: " + std::to_string(row_labels.size()) + " row labels and " +
                std::to_string(col_labels.size()) + " column labels for weights of shape " +
                to_string(weights.shape()));
  }
  const std::vector<float> w = weights.to_vector();
  float largest = 0.0f;
  for (float v : w) largest = std::max(largest, v);

  size_t label_width = 0, col_label_height = 0;
  std::vector<std::vector<std::string>> col_chars;
  for (const std::string& s : row_labels) label_width = std::max(label_width, characters(s).size());
  for (const std::string& s : col_labels) {
    col_chars.push_back(characters(s));
    col_label_height = std::max(col_label_height, col_chars.back().size());
  }

  std::string out;
  // Column labels written downwards, one character per line.
  for (size_t line = 0; line < col_label_height; ++line) {
    out += std::string(label_width + 2, ' ');
    for (const std::vector<std::string>& label : col_chars) {
      out += std::string(kCellWidth - 1, ' ');
      out += line < label.size() ? label[line] : std::string(" ");
    }
    out += '\n';
  }
  for (int64_t r = 0; r < rows; ++r) {
    out += std::string(label_width - characters(row_labels[r]).size(), ' ') + row_labels[r] + " |";
    for (int64_t c = 0; c < cols; ++c) {
      // Negative values (not weights) are drawn blank, like zero.
      const float v = largest > 0.0f ? std::max(0.0f, w[r * cols + c] / largest) : 0.0f;
      const size_t shade = std::min(kShades.size() - 1, static_cast<size_t>(v * (kShades.size() - 1) + 0.5f));
      out += std::string(kCellWidth, kShades[shade]);
    }
    out += "|\n";
  }
  return out;
}

}  // namespace attend::io
