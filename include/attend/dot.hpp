// Drawing the autograd graph: export it in Graphviz DOT so that
// `dot -Tsvg graph.dot > graph.svg` shows which ops made a tensor.
// Chapter 2 (docs/02-autograd.md).
#pragma once

#include <string>

#include "attend/tensor.hpp"

namespace attend::io {

// The graph that produced `root`: one box per tensor (name, shape, whether it
// requires grad), one ellipse per op, arrows in the direction data flowed.
std::string to_dot(const Tensor& root);

}  // namespace attend::io
