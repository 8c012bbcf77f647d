// The backward engine: recording ops, topological order, the chain rule,
// gradient accumulation, freeing the graph. Chapter 2 (docs/02-autograd.md).
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "attend/autograd.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/strided.hpp"

namespace attend {

// --- grad mode ---

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

// --- recording ---

namespace {
// The tensor's autograd fields, made on first use.
AutogradMeta& autograd_meta(TensorImpl& impl) {
  if (!impl.autograd) impl.autograd = std::make_shared<AutogradMeta>();
  return *impl.autograd;
}
}  // namespace

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

void record_op(const std::string& op, Tensor& output, const std::vector<Tensor>& inputs,
               BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs.reserve(inputs.size());
  for (const Tensor& input : inputs) {  // the edges: autograd fields and shape, not the values
    if (!input.defined()) {
      node->inputs.push_back({});
    } else {
      node->inputs.push_back({true, input.impl()->autograd, input.shape(), input.name()});
    }
  }
  node->backward = std::move(backward);
  AutogradMeta& meta = autograd_meta(*output.impl());
  meta.grad_fn = std::move(node);
  meta.requires_grad = true;
}

Node::~Node() {
  // A chain of 100,000 ops is a chain of 100,000 nested shared_ptrs: letting
  // them destroy each other recursively would overflow the stack. Instead we
  // detach the nodes that only we keep alive and destroy them one at a time.
  backward = nullptr;  // drops the saved tensors, which also point into the graph
  std::vector<std::shared_ptr<Node>> pending;
  auto unlink = [&pending](std::vector<Edge>& edges) {
    for (Edge& edge : edges) {
      const std::shared_ptr<AutogradMeta>& meta = edge.autograd;
      if (meta && meta.use_count() == 1 && meta->grad_fn && meta->grad_fn.use_count() == 1) {
        pending.push_back(std::move(meta->grad_fn));
      }
    }
    edges.clear();
  };
  unlink(inputs);
  while (!pending.empty()) {
    std::shared_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    node->backward = nullptr;
    unlink(node->inputs);
  }  // `node` dies here with no edges left, so its destructor does not recurse
}

// --- gradients of broadcast inputs ---

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  // Read the result through broadcast strides (0 along stretched dims), so
  // every gradient element lands on the input element it was broadcast from.
  const Shape out_strides = broadcast_strides(shape, contiguous_strides(shape), grad.shape(), "sum_to_shape");
  if (grad.device() == Device::cuda) {  // chapter 11: one thread per element of out, the same order
    Tensor out = empty(shape, Device::cuda);
    kernels::sum_to_shape_device(grad.device_data(), device_shape(grad.shape(), "sum_to_shape"),
                                 device_strides(grad.strides()), out.device_data(),
                                 device_shape(shape, "sum_to_shape"));
    return out;
  }
  Tensor out = zeros(shape);
  const float* g = grad.impl()->storage->floats.data();
  float* o = out.data();
  // The common case, a bias's gradient ((B, T, C) -> (C)): leading dims
  // summed away, the rest kept, g contiguous. Then g is (rows, inner) and
  // out (inner); threads share strips of columns (chapter 10), each column
  // summed row by row as the loop below would: the same bits on any number
  // of threads.
  const int64_t leading = static_cast<int64_t>(grad.shape().size() - shape.size());
  bool columns = grad.is_contiguous() && leading >= 0;
  for (int64_t d = 0; columns && d < static_cast<int64_t>(shape.size()); ++d) {
    columns = shape[d] == grad.shape()[leading + d];
  }
  if (columns) {
    const int64_t inner = out.numel(), rows = inner == 0 ? 0 : grad.numel() / inner;
    g += grad.offset();
    const int64_t strips = (inner + kColumnsPerTask - 1) / kColumnsPerTask;
    parallel_for(strips, grad.numel() >= kParallelThreshold, [&](int64_t strip_index) {
      const int64_t c0 = strip_index * kColumnsPerTask;
      const int64_t width = std::min(inner, c0 + kColumnsPerTask) - c0;
      // The strip's sums in a local array: the compiler keeps them in
      // vector registers (o[c] += ... would be loaded and stored every row,
      // since o might overlap g as far as it knows). The same sums in the same order.
      float strip[kColumnsPerTask] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const float* g_row = g + r * inner + c0;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) strip[c] += g_row[c];
      }
      for (int64_t c = 0; c < width; ++c) o[c0 + c] = strip[c];
    });
    return out;
  }
  for_each_offset<2>(grad.shape(), {&grad.strides(), &out_strides}, {grad.offset(), 0},
                     [&](const std::array<int64_t, 2>& off) { o[off[1]] += g[off[0]]; });
  return out;
}

namespace {

// sum_so_far + g as a fresh contiguous tensor (sum_so_far undefined: a copy
// of g). Gradients are never added in place: the tensor may be a view into
// data that someone else still reads.
Tensor add_gradients(const Tensor& sum_so_far, const Tensor& g) {
  // exercise 2.2 begin: sum_so_far + g as a new contiguous tensor (a copy of g if sum_so_far is undefined)
  if (!sum_so_far.defined()) return copy_to_contiguous(g);
  if (sum_so_far.device() != g.device()) {
    throw Error("backward: gradients on two devices meet (" + attend::to_string(sum_so_far.device()) +
                " and " + attend::to_string(g.device()) + "): an op's backward returned one on the wrong device");
  }
  if (g.device() == Device::cuda) {  // chapter 11: the same sum, by the elementwise kernel
    Tensor sum = empty(g.shape(), Device::cuda);
    kernels::binary_device(kernels::BinaryOp::add, 0.0f, sum_so_far.device_data(),
                           device_strides(sum_so_far.strides()), g.device_data(),
                           device_strides(g.strides()), sum.device_data(),
                           device_shape(g.shape(), "backward"));
    return sum;
  }
  // Views (a transposed gradient, say) are made contiguous first; most
  // gradients already are, and then this is one pass shared by the threads
  // (every residual connection of a Transformer sums two gradients here).
  const Tensor a = sum_so_far.contiguous(), b = g.contiguous();
  Tensor sum = empty(a.shape());  // every element is written below
  const float* pa = a.data();
  const float* pb = b.data();
  float* out = sum.data();
  const int64_t n = sum.numel();
  parallel_for_simd(n, n >= kParallelThreshold, [&](int64_t i) { out[i] = pa[i] + pb[i]; });
  return sum;
  // exercise 2.2 end
}

// Whether no other handle or view can see g's array: g is the only handle
// to its TensorImpl and to its storage, a plain contiguous CPU tensor that
// fills its storage, outside autograd.
bool sole_owner(const Tensor& g) {
  const TensorImpl& impl = *g.impl();
  return g.impl().use_count() == 1 && impl.storage.use_count() == 1 && !impl.autograd &&
         g.device() == Device::cpu && g.offset() == 0 && g.is_contiguous() &&
         static_cast<int64_t>(impl.storage->floats.size()) == g.numel();
}

// A leaf's (or a retained) .grad += g, allocating it on first use. The first
// gradient is kept as it is when nobody else can see its array (a weight's
// dW, fresh from its matmul, is): a copy would cost a pass over every
// parameter each step (28 MB read and written for a 7M-parameter model).
void accumulate(std::shared_ptr<TensorImpl>& slot, Tensor g) {
  if (!slot && sole_owner(g)) {
    slot = g.impl();
    return;
  }
  slot = add_gradients(Tensor(slot), g).impl();
}

// The tensors of the graph (their autograd fields) in an order where every
// tensor comes before the inputs of the op that made it (reverse topological
// order), found with an explicit stack so that a chain of any depth needs no
// recursion.
std::vector<std::shared_ptr<AutogradMeta>> reverse_topological_order(const std::shared_ptr<AutogradMeta>& root) {
  // exercise 2.1 begin: every tensor that requires grad, each before the inputs of its grad_fn, without recursion
  std::vector<std::shared_ptr<AutogradMeta>> post_order;  // inputs before outputs
  std::unordered_set<const AutogradMeta*> visited{root.get()};
  // Each stack entry: a tensor and how many of its inputs we have visited.
  std::vector<std::pair<std::shared_ptr<AutogradMeta>, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [meta, next] = stack.back();
    const Node* node = meta->grad_fn.get();
    if (node && next < node->inputs.size()) {
      const Edge& edge = node->inputs[next++];
      if (edge.requires_grad() && visited.insert(edge.autograd.get()).second) {
        stack.emplace_back(edge.autograd, 0);  // may move `meta`: not used again this turn
      }
      continue;
    }
    post_order.push_back(meta);  // all its inputs are done
    stack.pop_back();
  }
  std::reverse(post_order.begin(), post_order.end());
  return post_order;
  // exercise 2.1 end
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  if (!root.defined()) throw Error("backward: called on an undefined tensor");
  if (!root.requires_grad()) {
    throw Error("backward: the tensor of shape " + attend::to_string(root.shape()) +
                " does not require grad (no input of the ops that made it requires grad)");
  }
  Tensor seed = gradient;
  if (!seed.defined()) {
    if (root.numel() != 1) {
      throw Error("backward: the output has shape " + attend::to_string(root.shape()) +
                  " and is not a scalar; pass a gradient of that shape: backward(gradient)");
    }
    seed = ones(root.shape(), root.device());
  } else if (seed.device() != root.device()) {
    throw Error("backward: the gradient is on " + attend::to_string(seed.device()) +
                " and the output on " + attend::to_string(root.device()) + "; move it with .to()");
  } else if (seed.shape() != root.shape()) {
    throw Error("backward: gradient of shape " + attend::to_string(seed.shape()) +
                " does not match the output's shape " + attend::to_string(root.shape()));
  } else if (seed.dtype() != DType::Float32) {
    throw Error("backward: the gradient must be float32");
  }

  NoGradGuard no_grad;  // backward functions use ops; they must not record
  const auto order = reverse_topological_order(root.impl()->autograd);
  std::unordered_map<const AutogradMeta*, Tensor> pending;  // dLoss/dTensor so far
  pending[root.impl()->autograd.get()] = seed;

  for (const std::shared_ptr<AutogradMeta>& tensor : order) {
    auto found = pending.find(tensor.get());
    if (found == pending.end()) continue;  // reached, but no gradient flowed here
    Tensor grad = std::move(found->second);
    pending.erase(found);

    AutogradMeta& meta = *tensor;  // every tensor in `order` requires grad
    Node* node = meta.grad_fn.get();
    if (!node) {  // a leaf: this is where gradients accumulate
      accumulate(meta.grad, std::move(grad));
      continue;
    }
    if (meta.retains_grad) accumulate(meta.grad, grad);
    if (node->released) {
      throw Error("backward: the graph through '" + node->op +
                  "' was already freed by an earlier backward(); call backward(gradient, "
                  "/*retain_graph=*/true) the first time to go through it twice");
    }
    std::vector<Tensor> input_grads = node->backward(grad);  // the chain rule, one op
    if (input_grads.size() != node->inputs.size()) {
      throw Error("backward of '" + node->op + "' returned " +
                  std::to_string(input_grads.size()) + " gradients for " +
                  std::to_string(node->inputs.size()) + " inputs");
    }
    for (size_t i = 0; i < input_grads.size(); ++i) {
      const Edge& input = node->inputs[i];
      if (!input.requires_grad() || !input_grads[i].defined()) continue;
      // A gradient has its input's shape or one the input was broadcast to;
      // any other shape is a bug in the op's backward: say which op.
      Tensor g;
      try {
        g = sum_to_shape(input_grads[i], input.shape);
      } catch (const Error&) {
        throw Error("backward of '" + node->op + "': gradient of shape " +
                    attend::to_string(input_grads[i].shape()) + " for input " + std::to_string(i) +
                    " of shape " + attend::to_string(input.shape));
      }
      // exercise 2.3 begin: add g to the input's pending gradient (a tensor used twice receives the sum)
      auto [slot, fresh] = pending.try_emplace(input.autograd.get(), g);
      // A tensor used several times receives the sum of its gradients.
      if (!fresh) slot->second = add_gradients(slot->second, g);
      // exercise 2.3 end
    }
    if (!retain_graph) {
      // Free what the op saved. `order` still holds every tensor's autograd
      // fields, so dropping edges here cannot set off a chain of destructors.
      node->backward = nullptr;
      node->inputs.clear();
      node->released = true;
    }
  }
}

// --- the autograd methods of Tensor ---

bool Tensor::requires_grad() const {
  return defined() && impl_->autograd && impl_->autograd->requires_grad;
}

Tensor Tensor::set_requires_grad(bool value) {
  if (!defined()) throw Error("set_requires_grad: undefined tensor");
  if (grad_fn()) {
    throw Error("set_requires_grad: only leaf tensors can be switched; this one was made by '" +
                grad_fn()->op + "' (use detach() first)");
  }
  if (value && dtype() != DType::Float32) {
    throw Error("set_requires_grad: only float32 tensors can require grad, got " +
                attend::to_string(dtype()));
  }
  if (value || impl_->autograd) autograd_meta(*impl_).requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const { return defined() && !grad_fn(); }
Tensor Tensor::grad() const {
  return defined() && impl_->autograd ? Tensor(impl_->autograd->grad) : Tensor();
}
void Tensor::zero_grad() {
  if (defined() && impl_->autograd) impl_->autograd->grad.reset();
}
void Tensor::retain_grad() {
  if (defined()) autograd_meta(*impl_).retains_grad = true;
}
void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  run_backward(*this, gradient, retain_graph);
}

Tensor Tensor::detach() const {
  if (!defined()) return Tensor();
  Tensor out = as_strided(*this, shape(), strides(), offset());
  out.impl()->name = impl_->name;
  return out;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return defined() && impl_->autograd ? impl_->autograd->grad_fn : none;
}

std::string Tensor::grad_fn_name() const { return grad_fn() ? grad_fn()->op : ""; }

}  // namespace attend
