// attend::Error: every error Attend throws. Its own header so that the lowest
// layer (the kernels, chapter 3 and chapter 11) can throw it without
// depending on tensors or shapes. Chapter 1 (docs/01-tensors.md) introduces it.
#pragma once

#include <stdexcept>

namespace attend {

// Every error Attend throws: the message names the op and the shapes involved.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace attend
