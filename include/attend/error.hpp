// attend::Error, the one exception type every layer throws. Its message names
// the operation and the shapes involved (or the file and line of bad input).
// Chapter 1 (docs/01-tensors.md) meets it first; the CLI prints it as one line.
#pragma once

#include <stdexcept>

namespace attend {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace attend
