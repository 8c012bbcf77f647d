// Reverse-mode automatic differentiation on a graph recorded as ops run.
// Chapter 2 (docs/02-autograd.md).
//
// Every differentiable op computes its output, then calls record_op() with a
// backward function: given dLoss/dOutput it returns dLoss/dInput for each
// input. backward() walks those nodes from the loss back to the leaves.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attend/tensor.hpp"

namespace attend {

// grad_output -> one gradient per input (undefined for inputs that get none).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct AutogradMeta;

// An edge of the graph, from an op back to one of its inputs. It holds what
// the engine needs of the input (its autograd fields, which lead on to the
// op that made it, and its shape), not the input itself: the input's values
// stay alive only if a backward function saved them (as PyTorch's graph does).
// A graph of edges to whole tensors would keep every tensor of the forward
// pass until backward() (docs/10-speed.md, "Memory").
struct Edge {
  bool defined = false;                    // false for an optional input left out (no bias)
  std::shared_ptr<AutogradMeta> autograd;  // the input's; null if it never took part in autograd
  Shape shape;                             // the input's shape: its gradient must have it
  std::string name;                        // the input's name when it was recorded (DOT graphs)
  bool requires_grad() const;              // false for an input that is a constant
};

// One recorded op: its name, edges to the inputs it read, and how to push a
// gradient back through it. The output tensor owns its Node (AutogradMeta::grad_fn).
struct Node {
  std::string op;            // "mul", "matmul", ... shown in errors and DOT graphs
  std::vector<Edge> inputs;  // the edges of the graph, toward the leaves (one per input)
  BackwardFn backward;
  bool released = false;     // true once backward() has freed what it saved
  ~Node();                   // tears long chains down without deep recursion
};

// The autograd fields of a tensor (TensorImpl::autograd), made on first use:
// a tensor that never needed a gradient carries none of this.
struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;          // keep .grad on a non-leaf too
  std::shared_ptr<TensorImpl> grad;   // accumulated gradient, same shape
  std::shared_ptr<Node> grad_fn;      // the op that made this tensor; null for leaves
};

inline bool Edge::requires_grad() const { return autograd && autograd->requires_grad; }

// Whether ops record the graph now (true unless a NoGradGuard is alive).
bool grad_enabled();

// While alive, ops record nothing: for evaluation and optimizer updates.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op with these inputs should record itself: grad mode is on
// and at least one input requires a gradient.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Makes `output` the result of op `op` applied to `inputs`: it now requires a
// gradient and remembers `backward`. Does nothing unless any_requires_grad().
// A backward function must not capture `output` itself (that would be a
// reference cycle): capture output.detach() instead.
void record_op(const std::string& op, Tensor& output, const std::vector<Tensor>& inputs,
               BackwardFn backward);

// Backpropagation from `root` (Tensor::backward calls this). Gradients of
// broadcast inputs are summed back to the input's shape here, once for all ops.
void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph);

// Sums `grad` over the dimensions that broadcasting stretched, so that it has
// `shape` again: (4, 5, 3) -> (5, 1, 3) sums over dim 0 and over dim 2.
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

}  // namespace attend
